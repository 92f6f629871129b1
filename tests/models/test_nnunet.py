"""The nnunet family: nnU-Net's PlainConvUNet, built as nnU-Net builds it from arch_kwargs."""

from __future__ import annotations

import pydoc

import pytest
import torch

from medtoken import create_model
from medtoken.models.losses import dice_ce_loss
from medtoken.utils.errors import InputError

pytest.importorskip("dynamic_network_architectures")

# arch_kwargs of nnU-Net v2's 3d_fullres plan for MSD Hippocampus (nnUNetPlans.json)
HIPPOCAMPUS_ARCH = {
    "n_stages": 4, "features_per_stage": [32, 64, 128, 256],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}


def _nnunet_get_network_from_plans(arch: dict, in_channels: int,
                                   num_classes: int) -> torch.nn.Module:
    """nnU-Net v2's ``get_network_from_plans`` (nnunetv2/utilities/get_network_from_plans.py)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kwargs = dict(arch)
    for key in ("conv_op", "norm_op", "dropout_op", "nonlin"):
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    net = PlainConvUNet(input_channels=in_channels, num_classes=num_classes,
                        deep_supervision=True, **kwargs)
    net.apply(net.initialize)
    return net


def test_nnunet3d_is_the_network_nnunet_builds_for_hippocampus() -> None:
    ours = create_model("nnunet3d", num_classes=3)
    theirs = _nnunet_get_network_from_plans(HIPPOCAMPUS_ARCH, 1, 3)
    assert [(k, v.shape) for k, v in ours.net.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.net.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 1, 40, 56, 40)
    with torch.inference_mode():
        theirs.eval().decoder.deep_supervision = False
        torch.testing.assert_close(ours.eval()(x), theirs(x))


def test_nnunet2d_has_seven_stages_up_to_512() -> None:
    cfg = create_model("nnunet2d").config
    assert cfg.n_stages == 7 and cfg.features_per_stage == (32, 64, 128, 256, 512, 512, 512)
    assert cfg.roi_size == (256, 256)


def test_forward_is_full_resolution_and_aux_uses_every_decoder_output() -> None:
    model = create_model("nnunet_test", num_classes=2).train()
    x, y = torch.randn(2, 1, 16, 16, 16), torch.randint(0, 2, (2, 1, 16, 16, 16))
    assert model.computes_segmentation_loss
    out = model.forward_with_aux(x, y)
    assert set(out.losses) == {"nnunet"}
    assert out.logits.shape == (2, 2, 16, 16, 16)
    outputs = model._run(x, all_resolutions=True)
    assert [tuple(o.shape[2:]) for o in outputs] == [(16, 16, 16), (8, 8, 8)]
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model._run(x, all_resolutions=True)[0])


def test_without_deep_supervision_the_loss_is_full_resolution_only() -> None:
    model = create_model("nnunet2d_test", deep_supervision=False)
    x, y = torch.randn(1, 1, 32, 32), torch.randint(0, 2, (1, 1, 32, 32))
    out = model.forward_with_aux(x, y)
    torch.testing.assert_close(out.losses["nnunet"], dice_ce_loss(out.logits, y, True))


def test_inconsistent_stage_lists_are_refused() -> None:
    with pytest.raises(InputError, match="features_per_stage"):
        create_model("nnunet_test", features_per_stage=[4, 8])
