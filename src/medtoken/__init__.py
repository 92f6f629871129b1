"""medtoken: fast medical image segmentation with token-efficient networks.

Public API: :func:`create_model`, :func:`list_models`, :func:`load_model`, :func:`predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medtoken.registry import create_model, list_models, set_family_loader
from medtoken.utils.version import __version__

__all__ = ["__version__", "create_model", "list_models", "load_model", "predict"]


def _import_families() -> None:
    import medtoken.models  # noqa: F401  (each family registers itself on import)


set_family_loader(_import_families)


def load_model(path: str | Path, device: str = "cpu") -> Any:
    """Load a trained model (eval mode) from a run folder or a checkpoint file.

    The model is rebuilt from the config stored in the checkpoint, not from the preset name, so
    later edits to a preset never break old checkpoints. Loading uses ``weights_only=True``.
    """
    from medtoken.models.checkpoint import load_model_checkpoint

    return load_model_checkpoint(path, device=device).model


def predict(model_or_run: Any, image: Any, spacing: Any = None, **kwargs: Any) -> Any:
    """Segment one image (array ``(C, *S)`` in the readers' axis order, or a path) with a run,
    checkpoint, export or ensemble; see :func:`medtoken.inference.api.predict`."""
    from medtoken.inference.api import predict as _predict

    return _predict(model_or_run, image, spacing, **kwargs)
