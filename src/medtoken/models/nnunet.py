"""nnU-Net's own network: ``PlainConvUNet`` from ``dynamic_network_architectures``.

This is the class nnU-Net v2 builds for ``3d_fullres`` and ``2d`` (``get_network_from_plans``
with the plan's ``arch_kwargs``), wrapped in the medtoken contract. The config fields mirror the
``arch_kwargs`` of an ``nnUNetPlans.json`` configuration (in medtoken's array axis order), so a
plan maps onto a config field by field (:meth:`NNUNetConfig.fields_from_plan`).

Training uses nnU-Net's deep-supervision loss (:mod:`medtoken.models.losses`):
``forward_with_aux(x, target)`` returns it as the whole segmentation loss
(``computes_segmentation_loss`` is true, so the training loop adds no DiceCE of its own).
``forward(x)`` returns only the full-resolution logits ``(B, K, *S)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from medtoken.layers.factory import conv_type, instance_norm_type
from medtoken.models.base import ModelConfig, SegmentationModel, SegOutput
from medtoken.models.losses import deep_supervision_loss, deep_supervision_scales
from medtoken.registry import register_family, register_preset
from medtoken.utils.errors import InputError

if TYPE_CHECKING:
    from medtoken.planning.plans import NnunetPlan

__all__ = ["NNUNetConfig", "NNUNetModel", "nnunet_defaults"]

_ARCH_FIELDS = ("n_stages", "features_per_stage", "n_conv_per_stage", "n_conv_per_stage_decoder")
_INSTALL_HINT = ("dynamic_network_architectures: pip install --no-deps "
                 "'dynamic_network_architectures>=0.4.4,<0.5'")


@dataclass(frozen=True)
class NNUNetConfig(ModelConfig):
    """nnU-Net's ``PlainConvUNet``; fields follow a plan's ``arch_kwargs``.

    Attributes:
        n_stages: encoder resolution stages.
        features_per_stage: channels per stage.
        kernel_sizes: per stage, the convolution kernel per axis.
        strides: per stage, the downsampling per axis (the first is all ones).
        n_conv_per_stage: convolutions per encoder stage.
        n_conv_per_stage_decoder: convolutions per decoder stage (``n_stages - 1`` entries).
        conv_bias: convolutions have a bias (nnU-Net: true).
        norm_eps: ``InstanceNorm`` epsilon (nnU-Net: 1e-5, affine).
        negative_slope: ``LeakyReLU`` slope (nnU-Net: 0.01, in place).
        deep_supervision: train with nnU-Net's loss at every decoder resolution.
        batch_dice: the soft Dice pools the batch (the plan's ``batch_dice``).
    """

    family: ClassVar[str] = "nnunet"
    uses_plan: ClassVar[bool] = True
    plan_presets: ClassVar[dict[str, str]] = {"3d_fullres": "nnunet3d", "2d": "nnunet2d"}
    n_stages: int = 4
    features_per_stage: tuple[int, ...] = (32, 64, 128, 256)
    kernel_sizes: tuple[tuple[int, ...], ...] = ((3, 3, 3),) * 4
    strides: tuple[tuple[int, ...], ...] = ((1, 1, 1),) + ((2, 2, 2),) * 3
    n_conv_per_stage: tuple[int, ...] = (2, 2, 2, 2)
    n_conv_per_stage_decoder: tuple[int, ...] = (2, 2, 2)
    conv_bias: bool = True
    norm_eps: float = 1e-5
    negative_slope: float = 0.01
    deep_supervision: bool = True
    batch_dice: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.n_stages
        if n < 2:
            raise ValueError(f"n_stages must be >= 2, got {n}")
        for name, expected in (("features_per_stage", n), ("kernel_sizes", n), ("strides", n),
                               ("n_conv_per_stage", n), ("n_conv_per_stage_decoder", n - 1)):
            if len(getattr(self, name)) != expected:
                raise ValueError(f"{name} must have {expected} entries (n_stages={n}), got "
                                 f"{getattr(self, name)}")
        for name in ("kernel_sizes", "strides"):
            if any(len(v) != self.spatial_dims or min(v) < 1 for v in getattr(self, name)):
                raise ValueError(f"every entry of {name} needs {self.spatial_dims} positive "
                                 f"values, got {getattr(self, name)}")

    @classmethod
    def fields_from_plan(cls, plan: NnunetPlan) -> dict[str, Any]:
        """Config fields of a plan (medtoken axis order): its ``arch_kwargs`` one to one, its
        ``batch_dice`` and its patch as ``roi_size``.

        Raises:
            InputError: naming the plans file, for a network other than ``PlainConvUNet``.
        """
        if not plan.network_class_name.endswith("PlainConvUNet"):
            raise InputError(plan.source, f"network '{plan.network_class_name}' is not "
                             "supported; medtoken's nnunet family builds PlainConvUNet "
                             "(nnU-Net's default plans)")
        kwargs = plan.arch_kwargs
        fields: dict[str, Any] = {k: list(kwargs[k]) if isinstance(kwargs[k], list) else kwargs[k]
                                  for k in _ARCH_FIELDS}
        fields["kernel_sizes"] = [list(k) for k in plan.kernel_sizes]  # (stage, axis)
        fields["strides"] = [list(s) for s in plan.strides]
        fields["conv_bias"] = bool(kwargs.get("conv_bias", True))
        fields["norm_eps"] = float((kwargs.get("norm_op_kwargs") or {}).get("eps", 1e-5))
        fields["negative_slope"] = float((kwargs.get("nonlin_kwargs") or {})
                                         .get("negative_slope", 0.01))
        fields["batch_dice"] = plan.batch_dice
        return {**fields, "roi_size": list(plan.roi_size)}


def _plain_conv_unet(config: NNUNetConfig) -> nn.Module:
    """``PlainConvUNet`` as nnU-Net's ``get_network_from_plans`` builds it (He init included)."""
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet
    except ImportError:
        raise InputError("--model", f"the nnunet models need {_INSTALL_HINT}") from None
    conv, norm = conv_type(config.spatial_dims), instance_norm_type(config.spatial_dims)
    net = PlainConvUNet(
        input_channels=config.in_channels, n_stages=config.n_stages,
        features_per_stage=list(config.features_per_stage), conv_op=conv,
        kernel_sizes=[list(k) for k in config.kernel_sizes],
        strides=[list(s) for s in config.strides],
        n_conv_per_stage=list(config.n_conv_per_stage), num_classes=config.num_classes,
        n_conv_per_stage_decoder=list(config.n_conv_per_stage_decoder),
        conv_bias=config.conv_bias, norm_op=norm,
        norm_op_kwargs={"eps": config.norm_eps, "affine": True},
        dropout_op=None, dropout_op_kwargs=None, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"negative_slope": config.negative_slope, "inplace": True},
        deep_supervision=config.deep_supervision)
    net.apply(net.initialize)
    return net  # type: ignore[no-any-return]


@register_family
class NNUNetModel(SegmentationModel):
    """nnU-Net's ``PlainConvUNet`` under the medtoken contract, with its deep-supervision loss."""

    config_class = NNUNetConfig
    config: NNUNetConfig

    def __init__(self, config: NNUNetConfig) -> None:
        super().__init__(config)
        self.net: Any = _plain_conv_unet(config)
        self.ds_scales = deep_supervision_scales(config.strides)

    @property
    def input_multiple(self) -> tuple[int, ...]:
        return tuple(math.prod(s[a] for s in self.config.strides)
                     for a in range(self.spatial_dims))

    @property
    def computes_segmentation_loss(self) -> bool:
        return True

    def _run(self, x: torch.Tensor, all_resolutions: bool) -> Any:
        """The network with the decoder's deep-supervision switch set for this call."""
        self.net.decoder.deep_supervision = all_resolutions  # read by UNetDecoder.forward
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> full-resolution logits ``(B, K, *S)``."""
        return self._run(x, all_resolutions=False)  # type: ignore[no-any-return]

    def forward_with_aux(self, x: torch.Tensor, target: torch.Tensor | None = None) -> SegOutput:
        """Logits and, given ``target (B, 1, *S)``, nnU-Net's loss as ``losses["nnunet"]``."""
        if target is None:
            return SegOutput(self(x))
        if not self.config.deep_supervision:
            logits = self(x)
            outputs = [logits]
            scales: list[tuple[float, ...]] = [(1.0,) * self.spatial_dims]
        else:
            outputs = self._run(x, all_resolutions=True)  # full resolution first
            logits, scales = outputs[0], self.ds_scales
        loss = deep_supervision_loss([o.float() for o in outputs], target, scales,
                                     batch_dice=self.config.batch_dice)
        return SegOutput(logits, losses={"nnunet": loss})


def nnunet_defaults(spatial_dims: int, roi_size: tuple[int, ...], n_stages: int,
                    max_features: int) -> dict[str, Any]:
    """Fields of a plain nnU-Net plan for isotropic data: 3-kernels, stride 2 after stage 0,
    features doubling from 32 up to ``max_features``, two convolutions per stage."""
    return {
        "spatial_dims": spatial_dims, "roi_size": roi_size, "n_stages": n_stages,
        "features_per_stage": tuple(min(32 * 2**i, max_features) for i in range(n_stages)),
        "kernel_sizes": ((3,) * spatial_dims,) * n_stages,
        "strides": ((1,) * spatial_dims,) + ((2,) * spatial_dims,) * (n_stages - 1),
        "n_conv_per_stage": (2,) * n_stages, "n_conv_per_stage_decoder": (2,) * (n_stages - 1),
    }


# --------------------------------------------------------------------------------------------
# presets


@register_preset
def nnunet3d() -> NNUNetConfig:
    """nnU-Net 3d_fullres as planned for MSD Hippocampus (40x56x40, 4 stages 32-256); training
    re-plans it from the dataset or reads ``--plans``."""
    return NNUNetConfig(**nnunet_defaults(3, (40, 56, 40), 4, 320))


@register_preset
def nnunet2d() -> NNUNetConfig:
    """nnU-Net 2d as planned for 256x256 images at 1 mm (BUSI): 7 stages, 32-512 features."""
    return NNUNetConfig(**nnunet_defaults(2, (256, 256), 7, 512))


@register_preset
def nnunet() -> NNUNetConfig:
    """nnU-Net, the configuration picked by the dataset: 3d_fullres for 3D data, 2d for 2D."""
    return nnunet3d()


@register_preset
def nnunet_test() -> NNUNetConfig:
    """Tiny 3D nnU-Net (3 stages, 4-16 features) for tests."""
    return NNUNetConfig(**{**nnunet_defaults(3, (16, 16, 16), 3, 16),
                           "features_per_stage": (4, 8, 16)})


@register_preset
def nnunet2d_test() -> NNUNetConfig:
    """Tiny 2D nnU-Net (3 stages, 4-16 features) for tests."""
    return NNUNetConfig(**{**nnunet_defaults(2, (32, 32), 3, 16),
                           "features_per_stage": (4, 8, 16)})
