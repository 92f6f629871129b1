"""The per-case memory estimate, the refusal of a case that does not fit, and where to stitch."""

from __future__ import annotations

import pytest
import torch

from medtoken.inference import memory
from medtoken.inference.memory import (
    CaseEstimate,
    check_case_fits,
    choose_accumulate_device,
    estimate_case,
    window_bytes,
)
from medtoken.registry import create_model
from medtoken.utils.errors import InputError

CT = (512, 512, 300)
GiB = 2**30


def test_slab_accumulators_grow_with_voxels_not_classes_times_voxels() -> None:
    slab = estimate_case(CT, 1, 14, [(96, 96, 96)], [0])
    full = estimate_case(CT, 1, 14, [(96, 96, 96)], [0], stitching="full")
    voxels = 512 * 512 * 300
    assert full.accumulators_bytes >= 3 * 14 * voxels * 4
    # one float16 ring buffer 96 planes deep + float32 weights + 3 float32 copies of a chunk
    # of planes: one plane of 14 classes is already more than FINALIZE_ELEMENTS (2**20) values
    chunk = 14 * 512 * 512
    assert slab.accumulators_bytes == 512 * 512 * 96 * (14 * 2 + 4) + 12 * chunk
    assert slab.total_bytes < 4 * GiB < 13 * GiB < full.total_bytes
    assert slab.outputs_bytes == voxels  # uint8 labels


def test_tta_ensembles_and_probabilities_are_counted() -> None:
    one = estimate_case(CT, 1, 14, [(96, 96, 96)], [0])
    tta = estimate_case(CT, 1, 14, [(96, 96, 96)], [0], tta=True)
    two = estimate_case(CT, 1, 14, [(96, 96, 96)] * 2, [0, 0])
    probs = estimate_case(CT, 1, 14, [(96, 96, 96)], [0], probabilities_bytes=2)
    chunk = 12 * 14 * 512 * 512
    rings = one.accumulators_bytes - chunk
    assert tta.accumulators_bytes - chunk == 8 * rings
    assert two.accumulators_bytes - chunk == 2 * rings
    assert probs.outputs_bytes - one.outputs_bytes == 14 * 512 * 512 * 300 * 2


def test_window_bytes_measures_the_model_and_scales_with_the_batch() -> None:
    model = create_model("unet3d", channels=[4, 8], roi_size=[32, 32, 32]).eval()
    one = window_bytes(model, (32, 32, 32), 1, torch.device("cpu"))
    two = window_bytes(model, (32, 32, 32), 2, torch.device("cpu"))
    io = 32**3 * 4 * (1 + 3 * model.num_classes)
    assert one > io and two == pytest.approx(2 * one, rel=0.01)
    assert one < 32**3 * 4 * 100  # a 2-level U-Net with 8 channels at most: far below 100 floats


def test_choice_of_accumulation_device() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert choose_accumulate_device(cpu, 1, 1, 10**12) == cpu
    assert choose_accumulate_device(gpu, 6 * GiB, 1 * GiB, 10 * GiB) == gpu
    assert choose_accumulate_device(gpu, 8 * GiB, 1 * GiB, 10 * GiB) == cpu  # 80 % headroom
    assert choose_accumulate_device(gpu, 1, 1, None) == cpu


def test_a_case_too_large_is_refused_with_the_estimate_and_the_flag(
        monkeypatch: pytest.MonkeyPatch) -> None:
    estimate = CaseEstimate(images_bytes=GiB, accumulators_bytes=2 * GiB, outputs_bytes=0,
                            windows_bytes=GiB)
    monkeypatch.setattr(memory, "available_memory", lambda device: 3 * GiB)
    with pytest.raises(InputError) as err:
        check_case_fits(estimate, "case.nii.gz", torch.device("cpu"), torch.device("cpu"))
    message = str(err.value)
    assert message.startswith("case.nii.gz: estimated peak 4.0 GiB (images 1.0, accumulators "
                              "2.0, outputs 0.0, windows 1.0)")
    assert "3.0 GiB available" in message and "--force-memory" in message
    assert "\n" not in message
    # on a GPU the windows (and here the accumulators) need the device's memory, not the host's
    monkeypatch.setattr(memory, "available_memory",
                        lambda device: 5 * GiB if device.type == "cuda" else 1 * GiB)
    check_case_fits(estimate, "case", torch.device("cuda"), torch.device("cuda"))
