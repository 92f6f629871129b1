"""Device selection and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from medtoken.utils.errors import InputError

__all__ = ["resolve_device", "seed_everything", "seed_step"]


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a usage error.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: this process's rank on its node when launched by ``torchrun`` with more
            than one process; CUDA then means ``cuda:local_rank`` (one GPU per process).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was requested but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError("--device", f"unknown device '{name}'; use auto, cpu or cuda")
    if local_rank is None or name == "cpu":
        return torch.device(name)
    if name != "cuda":
        raise InputError("--device", f"'{name}' names one GPU, but under torchrun each process "
                         "uses the GPU of its LOCAL_RANK; pass --device cuda (or auto) and choose "
                         "the GPUs with CUDA_VISIBLE_DEVICES")
    if local_rank >= torch.cuda.device_count():
        raise InputError("--device", f"LOCAL_RANK {local_rank} has no GPU: only "
                         f"{torch.cuda.device_count()} are visible on this node")
    return torch.device("cuda", local_rank)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (weights start identical on every rank)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed torch (CPU and every CUDA device) from ``(seed, rank, step)``.

    Called before every training step, so that the model's own randomness (Gumbel noise,
    stochastic depth, dead-code restarts) differs between ranks, is the same in a resumed run
    as in an uninterrupted one, and needs no random-generator state in the checkpoint.
    """
    # spawn_key keeps this stream apart from the patch sampler's generator of the same triple
    sequence = np.random.SeedSequence([seed, rank, step], spawn_key=(1,))
    state = sequence.generate_state(2, dtype=np.uint32)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))
