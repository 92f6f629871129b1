"""Time one optimiser step per model: PyTorch's per-tensor loop, ``foreach``, ``fused``.

The kernels are interleaved (loop, foreach, fused, loop, ...) over the model's real parameter
tensors with random gradients; one thread. Usage::

    OMP_NUM_THREADS=1 python scripts/optimizer_step.py tmunet_s unet2d scd_hippo unet3d

Prints the median milliseconds of each kernel per model (docs/benchmarks.md, "The optimiser step").
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from medtoken.registry import create_model

KERNELS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main(names: list[str], repeats: int = 9) -> None:
    torch.set_num_threads(1)
    print("| model | parameter tensors | parameters M | " + " | ".join(
        f"AdamW {k} ms" for k in KERNELS) + " | loop / fused |")
    print("|---|---|---|" + "---|" * (len(KERNELS) + 1))
    for name in names:
        params = [p for p in create_model(name).parameters() if p.requires_grad]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimisers = {k: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, **kw)
                      for k, kw in KERNELS.items()}
        times: dict[str, list[float]] = {k: [] for k in KERNELS}
        for i in range(repeats + 2):
            for k, opt in optimisers.items():
                start = time.perf_counter()
                opt.step()
                if i >= 2:  # two warm-ups
                    times[k].append(1e3 * (time.perf_counter() - start))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| `{name}` | {len(params)} | {sum(p.numel() for p in params) / 1e6:.2f} | "
              + " | ".join(f"{med[k]:.1f}" for k in KERNELS)
              + f" | {med['loop'] / med['fused']:.1f}× |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["tmunet_s", "unet2d", "scd_hippo", "unet3d"])
