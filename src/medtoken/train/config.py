"""The training configuration (everything about a run that is not the model)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``medtoken train``; saved fully resolved in the run folder's ``config.yaml``.

    Budgets: training stops at whichever of ``epochs``, ``max_steps`` and ``max_minutes`` comes
    first, and the cosine schedule anneals over that budget.
    """

    data: str = ""
    model: str = "unet3d"
    fold: str = "0"
    epochs: int = 1000
    steps_per_epoch: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None
    patch_size: tuple[int, ...] | None = None
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 3e-5
    warmup_steps: int = 50
    grad_clip: float = 12.0
    foreground_ratio: float = 0.33
    val_every: int = 5
    val_overlap: float = 0.5
    seed: int = 0
    amp: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise ValueError(f"foreground_ratio must be in [0, 1], got {self.foreground_ratio}")
        if not 0.0 <= self.val_overlap < 1.0:
            raise ValueError(f"val_overlap must be in [0, 1), got {self.val_overlap}")

    @property
    def total_steps(self) -> int:
        steps = self.epochs * self.steps_per_epoch
        return min(steps, self.max_steps) if self.max_steps else steps

    # Fields that may change when a run is resumed (budgets); everything else must match.
    RESUMABLE_CHANGES = ("epochs", "max_steps", "max_minutes", "val_every")
