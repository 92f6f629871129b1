"""Memory helpers: the live-tensor probe, probe windows, byte formatting."""

from __future__ import annotations

import torch

from medtoken.registry import create_model
from medtoken.utils.memory import byte_unit, format_bytes, peak_tensor_bytes, probe_size


def test_peak_counts_live_tensors_once_and_forgets_freed_ones() -> None:
    def work() -> torch.Tensor:
        a = torch.zeros(1000)  # 4000 bytes
        b = a.view(10, 100)  # same storage: not counted again
        del a, b
        c = torch.ones(500)  # a freed is not alive any more: peak stays 4000
        return c + 1  # 2000 + 2000 alive at once

    assert peak_tensor_bytes(work) == 4000


def test_peak_of_a_convolution_grows_with_the_input() -> None:
    conv = torch.nn.Conv3d(1, 8, 3, padding=1)
    small, large = torch.randn(1, 1, 8, 8, 8), torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        a = peak_tensor_bytes(lambda: conv(small))
        b = peak_tensor_bytes(lambda: conv(large))
    assert a >= 8 * 8**3 * 4 and 6 * a <= b <= 10 * a


def test_probe_size_halves_roi_in_multiples_of_the_model() -> None:
    model = create_model("unet3d", channels=[4, 8], roi_size=[16, 16, 16])  # multiple 2
    assert model.input_multiple == (2, 2, 2)
    assert probe_size(model, (96, 40, 17)) == (48, 20, 10)  # 17 / 2 rounds up to 10


def test_format_bytes() -> None:
    assert format_bytes(3 * 2**30) == "3.0 GiB" and format_bytes(512 * 2**20) == "512.0 MiB"
    assert byte_unit(100) == ("KiB", 1024.0)
