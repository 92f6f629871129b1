"""TokenSeg family (arXiv:2601.04519): importing registers the family and its presets."""

from medtoken.models.tokenseg import presets  # noqa: F401
from medtoken.models.tokenseg.config import (
    DecoderConfig,
    EncoderConfig,
    SelectionConfig,
    TokenSegConfig,
    VQConfig,
)
from medtoken.models.tokenseg.model import TokenSeg

__all__ = [
    "DecoderConfig",
    "EncoderConfig",
    "SelectionConfig",
    "TokenSeg",
    "TokenSegConfig",
    "VQConfig",
]
