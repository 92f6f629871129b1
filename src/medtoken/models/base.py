"""The contract every segmentation model in medtoken follows.

Training, inference, benchmarking and export rely only on what is here:

- ``forward(x)`` maps ``(B, in_channels, *S)`` to logits ``(B, num_classes, *S)``;
- ``forward_with_aux(x)`` also returns auxiliary losses (VQ commitment, ...) and diagnostics
  (kept-token indices, ...), which the training loop adds to the segmentation loss (or which
  are the whole loss, when ``computes_segmentation_loss``);
- ``SegOutput.tokens`` is the model's :class:`TokenSelection` (which tokens it kept, as voxel
  boxes) for token models, ``None`` for dense ones; plots and token statistics read only that;
- ``config`` is the frozen config the model was built from (stored in checkpoints); it names the
  dataset facts training fills in (``ModelConfig.dataset_facts``) and what an export bakes in
  (``ModelConfig.variant_notes``);
- ``input_multiple`` is what the spatial size must be divisible by, and ``fixed_input_size``
  is not ``None`` for models (ViTs with learned positional embeddings) that accept one size only;
  ``window_size`` is the input size of a sliding window (the fixed size, else ``roi_size``);
- ``activation_checkpoint_blocks`` are the block classes ``--grad-checkpointing`` wraps;
- ``compiled_training_problem`` names a known miscompile of the training step, or is ``None``.

A new family implements these in its own ``models/<family>/`` and touches nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from medtoken.planning.plans import NnunetPlan

__all__ = ["ModelConfig", "SegOutput", "SegmentationModel", "TokenSelection"]


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has; training fills them from the dataset.

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: image channels (modalities).
        num_classes: output classes including background.
        roi_size: the input patch the model is built for: the training patch and the
            sliding-window size at inference (``--roi-size`` on the command line).

    Class attributes:
        family: the registered family name.
        dataset_facts: dataset facts beyond channels and classes that training fills into the
            config; ``"spacing"``: the median voxel spacing of the training cases.
        uses_plan: the family is built from an nnU-Net plan (:meth:`fields_from_plan`).
        plan_presets: plan configuration (``"3d_fullres"``, ``"2d"``) -> the family's preset
            for it; ``--model <family>`` trains the one that fits the dataset.
    """

    family: ClassVar[str] = ""
    dataset_facts: ClassVar[tuple[str, ...]] = ()
    uses_plan: ClassVar[bool] = False
    plan_presets: ClassVar[dict[str, str]] = {}
    spatial_dims: int = 3
    in_channels: int = 1
    num_classes: int = 2
    roi_size: tuple[int, ...] = (64, 64, 64)

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background included), got "
                             f"{self.num_classes}")
        if len(self.roi_size) != self.spatial_dims or min(self.roi_size) < 1:
            raise ValueError(f"roi_size must have {self.spatial_dims} positive entries, got "
                             f"{self.roi_size}")

    @classmethod
    def fields_from_plan(cls, plan: NnunetPlan) -> dict[str, Any]:
        """Config fields of an nnU-Net plan configuration (families with ``uses_plan``).

        Raises:
            NotImplementedError: the family is not built from plans.
        """
        raise NotImplementedError(f"the {cls.family or cls.__name__} models take no nnU-Net plan")

    def variant_notes(self) -> dict[str, Any]:
        """What an export of this model bakes in (the sidecar's ``variant``): e.g. the mLSTM
        form or the token selection. Default: nothing."""
        return {}


@dataclass(frozen=True, eq=False)
class TokenSelection:
    """Which of a token model's candidate tokens it kept, as voxel boxes of its input window.

    Attributes:
        candidate_box: ``(N, 2 * sd)`` int64 half-open voxel boxes (starts, then stops) of every
            candidate token, in the candidates' order.
        kept: per selection stage, ``(B, K_s)`` indices into the candidates of the tokens kept
            there; stages nest, the last one is the final selection.
        candidate_level: ``(N,)`` scale of each candidate (level ``l``: a cell of the stride
            ``2**l`` feature map), or ``None`` when all candidates are cells of one grid.
    """

    candidate_box: torch.Tensor
    kept: tuple[torch.Tensor, ...]
    candidate_level: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.kept:
            raise ValueError("a token selection needs at least one stage")

    @property
    def selected_box(self) -> torch.Tensor:
        """``(B, K, 2 * sd)`` boxes of the finally selected tokens."""
        return self.candidate_box.to(self.kept[-1].device)[self.kept[-1]]


@dataclass
class SegOutput:
    """What ``forward_with_aux`` returns.

    Attributes:
        logits: ``(B, num_classes, *S)``.
        losses: auxiliary loss terms, already weighted, added to the segmentation loss.
        info: diagnostics for logging (never printed by the model); no consumer depends on its
            keys.
        tokens: the kept tokens of a token model, ``None`` for dense models.
    """

    logits: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    tokens: TokenSelection | None = None


class SegmentationModel(nn.Module):
    """Base class: holds the config and exposes the shared contract."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # block classes whose activations ``--grad-checkpointing`` recomputes (every instance of
    # them in the model is wrapped); empty: the model has no token blocks worth checkpointing
    activation_checkpoint_blocks: ClassVar[tuple[type[nn.Module], ...]] = ()

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config

    @property
    def spatial_dims(self) -> int:
        return self.config.spatial_dims

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def input_multiple(self) -> tuple[int, ...]:
        """Each spatial size of the input must be a multiple of this."""
        return (1,) * self.spatial_dims

    @property
    def fixed_input_size(self) -> tuple[int, ...] | None:
        """The only accepted spatial input size, or ``None`` if any multiple works."""
        return None

    @property
    def window_size(self) -> tuple[int, ...]:
        """The sliding-window (and benchmark) input size: the fixed input size if the model has
        one, else the config's ``roi_size``."""
        return tuple(self.fixed_input_size or self.config.roi_size)

    @property
    def needs_unused_parameter_search(self) -> bool:
        """True when some parameters may get no gradient in a step (DDP must be told)."""
        return False

    @property
    def computes_segmentation_loss(self) -> bool:
        """True when ``forward_with_aux(x, target)`` returns the whole segmentation loss in its
        ``losses`` (nnU-Net's deep supervision); training then adds no DiceCE of its own."""
        return False

    @property
    def compiled_training_problem(self) -> str | None:
        """Why ``--compile`` must not compile this model's training step (a known miscompile),
        or ``None``; training refuses the combination with this as the message."""
        return None

    def on_epoch_end(self) -> dict[str, float]:
        """Called by the training loop after each epoch; returns numbers to log (e.g. codebook
        utilisation) and may update internal state (e.g. restart dead codes). Default: nothing."""
        return {}

    def forward_with_aux(self, x: torch.Tensor, target: torch.Tensor | None = None) -> SegOutput:
        """Logits plus auxiliary losses and diagnostics.

        Args:
            x: ``(B, in_channels, *S)``.
            target: integer labels ``(B, 1, *S)`` for models with label-dependent auxiliary
                losses (e.g. a boundary loss); ignored by the others.
        """
        return SegOutput(self(x))
