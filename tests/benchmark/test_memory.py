"""Isolated peak-memory measurement: the child's own peak, not its parent's."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from medtoken import create_model
from medtoken.benchmark.memory import MemoryJob, measure_peak_memory
from medtoken.config import to_dict


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_isolated_peak_ignores_the_parents_memory() -> None:
    ballast = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this (parent) process
    config = create_model("unet3d", channels=[4, 8]).config
    job = MemoryJob(family="unet", config=to_dict(config), mode="infer",
                    input_size=[1, 1, 16, 16, 16], device="cpu", threads=1, steps=1)
    peak, method = measure_peak_memory(job, "isolated")
    assert ballast.sum() > 0 and method is not None and "VmHWM" in method
    assert peak is not None and 0 <= peak < 200  # a tiny model; ru_maxrss would report >= 400
