"""Activation ("gradient") checkpointing of a model's token blocks, without touching model code.

``--grad-checkpointing`` wraps every block of the classes a model names in
``activation_checkpoint_blocks`` (its transformer blocks, medtoken's or MONAI's; TM-UNet's MSTM
blocks of mLSTM pairs) with PyTorch's ``checkpoint_wrapper``: the block's activations are
dropped after the forward pass and recomputed in the backward pass. The non-reentrant
implementation is used; it restores the random-generator state for the recomputation, so
stochastic depth draws the same masks twice and gradients equal those of the plain model.

Two details keep the wrapped model equivalent to the plain one:

- state-dict keys are unchanged (the wrapper strips its ``_checkpoint_wrapped_module.`` prefix
  on save and adds it on load), so checkpoints load into plain models;
- the recomputation must not update buffers a second time: MSTM blocks hold BatchNorm layers
  whose running statistics would otherwise move twice per step, so every buffer of a block is
  restored after its recomputation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl,
    CheckpointWrapper,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)

__all__ = ["apply_grad_checkpointing", "block_types", "restore_buffers"]


def block_types(model: nn.Module) -> tuple[type[nn.Module], ...]:
    """The block classes of ``model`` whose activations are checkpointed (the model says)."""
    return tuple(getattr(model, "activation_checkpoint_blocks", ()))


@contextmanager
def restore_buffers(module: nn.Module) -> Iterator[None]:
    """Undo in-place buffer updates (BatchNorm running statistics) made inside the block."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _wrap(module: nn.Module) -> nn.Module:
    """Non-reentrant ``checkpoint_wrapper`` that restores ``module``'s buffers after recompute."""

    def contexts() -> tuple[AbstractContextManager[Any], AbstractContextManager[Any]]:
        return nullcontext(), restore_buffers(module)  # (forward, recomputation)

    return checkpoint_wrapper(module, checkpoint_impl=CheckpointImpl.NO_REENTRANT,
                              preserve_rng_state=True, context_fn=contexts)


def apply_grad_checkpointing(model: nn.Module) -> int:
    """Wrap the blocks of ``model`` in place (see :func:`block_types`).

    Returns:
        the number of blocks wrapped (0 for models that name no blocks).
    """
    types = block_types(model)
    apply_activation_checkpointing(model, checkpoint_wrapper_fn=_wrap,
                                   check_fn=lambda m: isinstance(m, types))
    return sum(isinstance(m, CheckpointWrapper) for m in model.modules())
