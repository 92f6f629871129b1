"""Time the chunkwise mLSTM with and without the floor on its weights (subnormal numbers).

``layers.mlstm._exp_weights`` sets weights under exp(-64) to 0; "plain" puts back the plain
``exp`` (masked entries at ``-inf``), which lets strongly forgetting gates decay into subnormal
numbers. Interleaved (plain, floored, plain, ...), one thread. Usage::

    OMP_NUM_THREADS=1 python scripts/mlstm_subnormals.py                 # the cell alone
    OMP_NUM_THREADS=1 python scripts/mlstm_subnormals.py RUN/checkpoint_last.pt BUSI_IMAGES

With a TM-UNet checkpoint and a folder of 2D images it also times a training step (batch 4,
the first four images) with those weights, and prints each mLSTM call's mean log forget gate.
docs/benchmarks.md, "Channels-last layout (2026-12-06)".
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import medtoken.layers.mlstm as mlstm_module
from medtoken.models.checkpoint import load_model_checkpoint

FLOORED = mlstm_module._exp_weights


def plain(log_w: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The weights before the floor: ``exp``, masked entries at ``-inf``."""
    return (log_w if keep is None else log_w.masked_fill(~keep, float("-inf"))).exp()


def interleaved(step: Callable[[], None], rounds: int = 3, repeats: int = 7) -> dict[str, float]:
    """Median ms of ``step`` with each weight function, alternating between them."""
    times: dict[str, list[float]] = {"plain": [], "floored": []}
    for _ in range(rounds):
        for name, fn in (("plain", plain), ("floored", FLOORED)):
            mlstm_module._exp_weights = fn
            for _ in range(2):
                step()
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times[name].append(1000 * (time.perf_counter() - start))
    mlstm_module._exp_weights = FLOORED
    return {name: statistics.median(values) for name, values in times.items()}


def cell(n_tok: int, head_dim: int, forget_mean: float) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, n_tok, head_dim, generator=gen, requires_grad=True)
               for _ in range(3))
    i_preact = torch.randn(2, 4, n_tok, generator=gen).requires_grad_()
    f_preact = (forget_mean + torch.randn(2, 4, n_tok, generator=gen)).requires_grad_()

    def step() -> None:
        mlstm_module.mlstm_chunkwise(q, k, v, i_preact, f_preact, chunk_size=64)[0].sum().backward()

    return interleaved(step)


def trained_step(checkpoint: str, images: str) -> dict[str, float]:
    model = load_model_checkpoint(checkpoint).model.train()
    files = sorted(Path(images).glob("*.png"))[:4]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("L"), dtype=np.float32))
                     for f in files])[:, None]
    x = (x - x.mean()) / x.std()
    forget = []
    aligned = mlstm_module._chunkwise_aligned

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        forget.append(F.logsigmoid(args[4]).mean().item())
        return aligned(*args, **kwargs)

    mlstm_module._chunkwise_aligned = spy
    with torch.no_grad():
        model(x)
    mlstm_module._chunkwise_aligned = aligned
    print("mean log forget gate per mLSTM call:", " ".join(f"{f:.2f}" for f in forget))
    optimiser = torch.optim.AdamW(model.parameters(), lr=0.0, fused=True)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        model(x).float().mean().backward()
        optimiser.step()

    return interleaved(step, repeats=5)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    print("| what | plain exp ms | floored ms | plain / floored |")
    print("|---|---|---|---|")
    rows = [(f"cell, {n} tokens, heads of {d}, forget ~ N({f:g}, 1)", cell(n, d, f))
            for n, d in ((1024, 16), (256, 32)) for f in (3.0, -2.0)]
    if len(argv) == 2:
        rows.append((f"training step, batch 4, {Path(argv[0]).name}", trained_step(*argv)))
    for what, ms in rows:
        print(f"| {what} | {ms['plain']:.1f} | {ms['floored']:.1f} | "
              f"{ms['plain'] / ms['floored']:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
