"""Vector quantisation of tokens (VQ-VAE, van den Oord et al. 2017, arXiv:1711.00937).

Pure functions first (:func:`nearest_code`, :func:`quantize`, :func:`code_perplexity`), then a thin
:class:`VectorQuantizer` module that owns the codebook, counts code usage between epochs and
restarts dead codes. Tokens are laid out ``(B, N, C)``; the codebook is ``(M, C)``.

Used by TokenSeg (arXiv:2601.04519): 4096 codes of width C, commitment ``beta = 0.25``,
straight-through gradients, distances always in float32 (also under autocast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VQOutput",
    "VectorQuantizer",
    "code_perplexity",
    "nearest_code",
    "quantize",
]


def nearest_code(tokens: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (squared Euclidean distance) for every token.

    Args:
        tokens: ``(..., C)``.
        codebook: ``(M, C)``.

    Returns:
        ``(...)`` int64 indices in ``[0, M)``; ties go to the lower index.
    """
    device_type = "cpu" if tokens.device.type == "meta" else tokens.device.type
    with torch.autocast(device_type=device_type, enabled=False):  # distances in float32
        flat = tokens.detach().reshape(-1, tokens.shape[-1]).float()  # (T, C)
        book = codebook.detach().float()  # (M, C)
        # ||t - c||^2 = ||t||^2 - 2 t.c + ||c||^2; ||t||^2 is constant per row and is dropped.
        dist = book.pow(2).sum(-1)[None, :] - 2.0 * flat @ book.t()  # (T, M)
        idx = dist.argmin(dim=-1)  # (T,)
    return idx.reshape(tokens.shape[:-1])


def quantize(
    tokens: torch.Tensor, codebook: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest-code quantisation with the VQ-VAE loss and a straight-through gradient.

    The loss is ``mse(c_k, sg[t]) + beta * mse(t, sg[c_k])``, averaged over tokens *and*
    channels (the spec's per-token squared norm divided by C).

    Args:
        tokens: ``(..., C)`` continuous tokens ``t``.
        codebook: ``(M, C)``.
        beta: commitment weight.

    Returns:
        ``(quantized, indices, loss)``: ``quantized (..., C)`` equals the chosen codes in the
        forward pass and has gradient identity w.r.t. ``tokens``; ``indices (...)``; ``loss`` a
        scalar.
    """
    indices = nearest_code(tokens, codebook)
    codes = codebook[indices].to(tokens.dtype)  # (..., C)
    loss = F.mse_loss(codes.float(), tokens.detach().float()) + beta * F.mse_loss(
        tokens.float(), codes.detach().float())
    quantized = tokens + (codes - tokens).detach()  # straight-through: d quantized / d t = I
    return quantized, indices, loss


def code_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp(entropy)`` of the code usage distribution (1 = one code used, M = uniform use).

    Args:
        counts: ``(M,)`` non-negative usage counts.

    Returns:
        A scalar; 0 when nothing has been counted.
    """
    total = counts.sum()
    if total <= 0:
        return counts.new_zeros(())
    probs = counts.float() / total
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return entropy.exp()


def _distributed() -> bool:
    """Inside an initialised ``torch.distributed`` process group (DDP training)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@dataclass
class VQOutput:
    """What :class:`VectorQuantizer` returns.

    Attributes:
        quantized: ``(B, N, C)`` straight-through quantised tokens.
        indices: ``(B, N)`` code indices.
        loss: scalar VQ loss (unweighted; the caller applies its loss weight).
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor


class VectorQuantizer(nn.Module):
    """A learnable codebook with usage statistics and dead-code restart.

    In training mode every forward pass adds the chosen codes to a usage histogram.
    :meth:`epoch_stats` returns utilisation (fraction of codes used) and perplexity, marks the
    codes that were never used as dead and resets the histogram; the next training forward
    re-initialises dead codes from randomly chosen tokens of its batch.

    Args:
        num_codes: codebook size M.
        dim: token width C.
        beta: commitment weight of the VQ loss.
        dead_code_restart: re-initialise codes unused over an epoch.
    """

    usage: torch.Tensor
    dead: torch.Tensor

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25,
                 dead_code_restart: bool = True) -> None:
        super().__init__()
        self.beta = beta
        self.dead_code_restart = dead_code_restart
        # N(0, 1) matches the scale of layer-normalised tokens, so early assignments are spread.
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))
        self.register_buffer("usage", torch.zeros(num_codes), persistent=False)
        self.register_buffer("dead", torch.zeros(num_codes, dtype=torch.bool), persistent=False)

    @property
    def num_codes(self) -> int:
        return int(self.codebook.shape[0])

    def forward(self, tokens: torch.Tensor) -> VQOutput:
        """Quantise ``tokens (B, N, C)``; see :func:`quantize`."""
        if self.training and bool(self.dead.any()):
            self._restart_dead(tokens)
        quantized, indices, loss = quantize(tokens, self.codebook, self.beta)
        if self.training:
            self.usage += torch.bincount(indices.flatten(), minlength=self.num_codes).to(
                self.usage.dtype)
        return VQOutput(quantized, indices, loss)

    @torch.no_grad()
    def _restart_dead(self, tokens: torch.Tensor) -> None:
        """Copy randomly chosen tokens of this batch into the dead codes."""
        flat = tokens.detach().reshape(-1, tokens.shape[-1])  # (T, C)
        dead_idx = self.dead.nonzero().flatten()  # (D,)
        pick = torch.randint(flat.shape[0], (dead_idx.numel(),), device=flat.device)
        self.codebook[dead_idx] = flat[pick].to(self.codebook.dtype)
        if _distributed():  # every rank restarts the same codes (``dead`` agrees); take rank 0's
            torch.distributed.broadcast(self.codebook.data, src=0)
        self.dead.zero_()

    @torch.no_grad()
    def epoch_stats(self) -> dict[str, float]:
        """Utilisation and perplexity since the last call; marks dead codes; resets counters.

        Returns:
            ``{"vq_utilisation": fraction of codes used, "vq_perplexity": exp(entropy)}``, or an
            empty dict when no training forward pass happened since the last call.
        """
        if _distributed():  # usage over every rank's batches, so all ranks see the same codes
            torch.distributed.all_reduce(self.usage)
        if float(self.usage.sum()) <= 0:
            return {}
        used = self.usage > 0
        stats = {"vq_utilisation": float(used.float().mean()),
                 "vq_perplexity": float(code_perplexity(self.usage))}
        if self.dead_code_restart:
            self.dead.copy_(~used)
        self.usage.zero_()
        return stats
