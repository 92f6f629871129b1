"""SCD family: ViT + soft-top-k token pruning (STP) + multi-layer token assembly (MTA) + UNETR
decoder, and its dense UNETR twin (Zhou et al., IPMI 2023, arXiv:2303.06522).

Importing this package registers the family and its presets.
"""

from __future__ import annotations

from medtoken.models.scd import presets  # noqa: F401  (registers the presets)
from medtoken.models.scd.config import (
    CompletionConfig,
    DecoderConfig,
    PruningConfig,
    SCDConfig,
    ViTConfig,
)
from medtoken.models.scd.decoder import UNETRDecoder
from medtoken.models.scd.encoder import EncoderOutput, ViTEncoder
from medtoken.models.scd.model import SCD
from medtoken.models.scd.presets import dense_twin

__all__ = [
    "SCD",
    "CompletionConfig",
    "DecoderConfig",
    "EncoderOutput",
    "PruningConfig",
    "SCDConfig",
    "UNETRDecoder",
    "ViTConfig",
    "ViTEncoder",
    "dense_twin",
]
