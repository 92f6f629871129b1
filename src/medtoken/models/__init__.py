"""Model families; importing this package registers every family and preset."""

from medtoken.models import (
    baselines,  # noqa: F401
    nnunet,  # noqa: F401
    probes,  # noqa: F401
    scd,  # noqa: F401
    tmunet,  # noqa: F401
    tokenseg,  # noqa: F401
)
from medtoken.models.base import ModelConfig, SegmentationModel, SegOutput

__all__ = ["ModelConfig", "SegOutput", "SegmentationModel"]
