"""Data-parallel training under ``torchrun``: process group, DDP wrapper, agreement between ranks.

``torchrun`` starts one process per GPU (or per CPU worker) and sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``. With ``WORLD_SIZE > 1`` training joins a process group (NCCL on CUDA, each rank on
``cuda:LOCAL_RANK``; gloo on CPU) and wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients. Everything
else a rank decides on its own must not differ between ranks, or the collectives stop matching
and the job hangs. So the step time (which drives the ``--max-minutes`` schedule) and the stop
signal are agreed with one small ``all_reduce`` per step, validation cases are split between
ranks and their scores gathered, and rank 0 alone writes files. With ``WORLD_SIZE`` unset or 1
every helper here is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medtoken.models.losses import batch_dice_over_ranks
from medtoken.utils.compile import maybe_compile
from medtoken.utils.device import resolve_device
from medtoken.utils.errors import InputError

__all__ = [
    "SINGLE",
    "DistInfo",
    "TrainForward",
    "broadcast_model_state",
    "env_info",
    "gather_split",
    "process_group",
    "quiet_unless_main",
    "reduce_values",
    "run_on_main",
    "split_for_rank",
    "sync_gradients",
    "wrap_for_training",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (``rank 0 of 1`` without ``torchrun``).

    Attributes:
        rank: global rank, ``0 .. world_size - 1``; rank 0 writes the run folder.
        local_rank: rank on this node; the GPU index under ``torchrun``.
        world_size: number of processes in the job.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = DistInfo()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise InputError(name, f"environment variable must be an integer, got '{raw}'") from None


def env_info() -> DistInfo:
    """This process's place: from an initialised process group, else from torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistInfo(rank, _env_int("LOCAL_RANK", rank), dist.get_world_size())
    world = _env_int("WORLD_SIZE", 1)
    info = DistInfo(_env_int("RANK", 0), _env_int("LOCAL_RANK", 0), world)
    if not 0 <= info.rank < world:
        raise InputError("RANK", f"{info.rank} is not in 0..WORLD_SIZE-1 ({world - 1})")
    return info


@contextmanager
def process_group(device: str) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the job's process group when ``WORLD_SIZE > 1``; yields ``(info, device)``.

    A group initialised by the caller is used as it is and left open; one created here is
    destroyed on exit.
    """
    info = env_info()
    if not info.enabled:
        yield info, resolve_device(device)
        return
    dev = resolve_device(device, info.local_rank)
    owned = not dist.is_initialized()
    if owned:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
    try:
        yield info, dev
    finally:
        if owned:
            dist.destroy_process_group()


@contextmanager
def quiet_unless_main(info: DistInfo) -> Iterator[None]:
    """Only warnings and errors from ``medtoken`` loggers on ranks other than 0."""
    logger = logging.getLogger("medtoken")
    level = logger.level
    if not info.is_main:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_on_main(fn: Callable[[], T], info: DistInfo) -> T | None:
    """Run ``fn`` on rank 0 only; an :class:`InputError` there is raised on every rank.

    Returns:
        ``fn()`` on rank 0, ``None`` elsewhere. Doubles as a barrier.
    """
    result, error = None, [None]
    if info.is_main:
        try:
            result = fn()
        except InputError as err:
            if not info.enabled:
                raise
            error = [(err.where, err.problem)]  # type: ignore[list-item]
    if info.enabled:
        dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        where, problem = error[0]
        raise InputError(where, problem)
    return result


class TrainForward(nn.Module):
    """``(x, y) -> (logits, summed auxiliary loss)`` via ``forward_with_aux``.

    DDP only hooks gradients up through its own ``forward``, so the training step calls the
    model through this module (wrapped in DDP when distributed). With ``over_ranks`` the
    forward's batch Dice terms (nnU-Net's deep-supervision loss) are summed over all ranks.
    """

    def __init__(self, model: nn.Module, over_ranks: bool = False) -> None:
        super().__init__()
        self.model = model
        self.over_ranks = over_ranks

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, *P)``, ``y (B, 1, *P)`` -> logits ``(B, K, *P)`` and a scalar."""
        with batch_dice_over_ranks() if self.over_ranks else nullcontext():
            out = self.model.forward_with_aux(x, y)  # type: ignore[operator]
        aux = sum(out.losses.values(), out.logits.new_zeros((), dtype=torch.float32))
        return out.logits, aux


def wrap_for_training(model: nn.Module, info: DistInfo, device: torch.device,
                      compile: bool = False) -> nn.Module:
    """:class:`TrainForward` of ``model`` (``torch.compile``-d with ``compile``), in DDP when
    distributed. ``model`` itself stays uncompiled: its ``state_dict`` keys are its own.

    ``find_unused_parameters`` follows the model's ``needs_unused_parameter_search`` (a
    per-step search of the autograd graph is costly, so it is never on by default).
    """
    step = maybe_compile(TrainForward(model, over_ranks=info.enabled), compile)
    if not info.enabled:
        return step
    return DistributedDataParallel(
        step, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(model, "needs_unused_parameter_search", False)))


def sync_gradients(module: nn.Module, sync: bool) -> AbstractContextManager[Any]:
    """DDP's ``no_sync()`` when ``sync`` is False (accumulating micro-batches), else nothing."""
    if sync or not isinstance(module, DistributedDataParallel):
        return nullcontext()
    return module.no_sync()


def reduce_values(values: Sequence[float], op: str, info: DistInfo,
                  device: torch.device) -> list[float]:
    """``max`` or ``mean`` of each value over ranks (the values themselves on one process)."""
    if op not in ("max", "mean"):
        raise ValueError(f"op must be 'max' or 'mean', got '{op}'")
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        t /= info.world_size
    return [float(v) for v in t.tolist()]


@torch.no_grad()
def broadcast_model_state(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank.

    Called at every epoch end: a no-op for models whose state changes only through the optimiser
    step (DDP keeps those identical); it re-aligns models that change their own state in
    ``forward`` or ``on_epoch_end`` from rank-local data (e.g. a VQ dead-code restart).
    """
    if not info.enabled:
        return
    for t in [*model.parameters(), *model.buffers()]:
        data = t.data.view(torch.uint8) if t.dtype == torch.bool else t.data
        dist.broadcast(data, src=0)


def split_for_rank(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share ``items[rank::world_size]`` (all of them on one process)."""
    return list(items[info.rank::info.world_size])


def gather_split(local: list[T], info: DistInfo) -> list[T]:
    """Undo :func:`split_for_rank`: every rank gets all items in their original order."""
    if not info.enabled:
        return local
    parts: list[list[T] | None] = [None] * info.world_size
    dist.all_gather_object(parts, local)
    full: list[Any] = [None] * sum(len(p or []) for p in parts)
    for rank, part in enumerate(parts):
        full[rank::info.world_size] = part or []
    return full
