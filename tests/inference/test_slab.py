"""Slab-wise stitching gives the labels and probabilities of MONAI's full-volume path."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices

from medtoken.inference.slab import Member, label_dtype, predict_slabwise, window_starts
from medtoken.inference.sliding_window import predict_probabilities
from medtoken.registry import create_model

FP16_PROB_ATOL = 1e-3  # documented tolerance of float16 accumulation on probabilities
FP16_MARGIN = 1e-2  # labels must agree wherever the reference's top-two margin exceeds this


def _net(dims: int, classes: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(1, 6, 3, padding=1), torch.nn.ReLU(),
                               conv(6, classes, 3, padding=1)).eval()


def _margin(probs: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=0)
    return top[-1] - top[-2]  # type: ignore[no-any-return]


CASES = [(3, (20, 23, 37), (16, 16, 16)), (3, (9, 30, 13), (16, 16, 16)),
         (2, (33, 17), (16, 16)), (2, (50, 47), (16, 8))]


@pytest.mark.parametrize(("dims", "shape", "roi"), CASES)
@pytest.mark.parametrize(("tta", "overlap"), list(itertools.product([False, True], [0.0, 0.5])))
def test_slab_equals_full_path(dims: int, shape: tuple[int, ...], roi: tuple[int, ...],
                               tta: bool, overlap: float) -> None:
    model = _net(dims)
    x = torch.randn(1, 1, *shape)
    ref = predict_probabilities(model, x, roi, overlap=overlap, tta=tta)[0].numpy()  # (K, *S)
    for dtype in (torch.float32, torch.float16):
        probs = np.zeros(ref.shape, np.float32)
        labels = predict_slabwise([Member(model, x[0], roi)], 4, overlap=overlap, tta=tta,
                                  accumulate_dtype=dtype, probabilities=probs)
        assert labels.shape == shape and labels.dtype == np.uint8
        if dtype == torch.float32:
            np.testing.assert_allclose(probs, ref, atol=1e-6)
            np.testing.assert_array_equal(labels, ref.argmax(0))
        else:
            np.testing.assert_allclose(probs, ref, atol=FP16_PROB_ATOL)
            clear = _margin(ref) > FP16_MARGIN
            np.testing.assert_array_equal(labels[clear], ref.argmax(0)[clear])
        np.testing.assert_array_equal(labels, probs.argmax(0))
    assert len(np.unique(ref.argmax(0))) > 1  # not a trivial case


def test_ensemble_averages_the_members_probabilities() -> None:
    a, b = _net(3, seed=1), _net(3, seed=2)
    x = torch.randn(1, 1, 21, 18, 26)
    roi_a, roi_b = (16, 16, 16), (8, 16, 24)  # members may use different windows
    ref = (predict_probabilities(a, x, roi_a) + predict_probabilities(b, x, roi_b))[0] / 2
    probs = np.zeros(tuple(ref.shape), np.float32)
    labels = predict_slabwise([Member(a, x[0], roi_a), Member(b, x[0], roi_b)], 4,
                              accumulate_dtype=torch.float32, probabilities=probs)
    np.testing.assert_allclose(probs, ref.numpy(), atol=1e-6)
    np.testing.assert_array_equal(labels, ref.argmax(0).numpy())


def test_fixed_batch_gets_exactly_its_windows_per_call() -> None:
    model = _net(3)
    calls: list[int] = []

    def predictor(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return model(x)  # type: ignore[no-any-return]

    x = torch.randn(1, 1, 20, 20, 30)
    fixed = predict_slabwise([Member(predictor, x[0], (16, 16, 16), 3, True)], 4, tta=True,
                             accumulate_dtype=torch.float32)
    assert set(calls) == {3}
    free = predict_slabwise([Member(model, x[0], (16, 16, 16), 2)], 4, tta=True,
                            accumulate_dtype=torch.float32)
    np.testing.assert_array_equal(fixed, free)


@pytest.mark.parametrize(("size", "roi", "overlap"),
                         [(37, 16, 0.5), (16, 16, 0.5), (9, 16, 0.5), (50, 8, 0.0), (33, 16, 0.3)])
def test_window_starts_are_monais(size: int, roi: int, overlap: float) -> None:
    starts, pad = window_starts(size, roi, overlap)
    padded = max(size, roi)
    assert pad == (padded - size) // 2
    interval = roi if roi == padded else max(int(roi * (1 - overlap)), 1)
    assert starts == [s[0].start for s in dense_patch_slices((padded,), (roi,), (interval,))]
    assert starts[0] == 0 and starts[-1] + roi == padded


def test_label_dtype_is_the_smallest() -> None:
    assert label_dtype(2) == np.uint8 and label_dtype(256) == np.uint8
    assert label_dtype(257) == np.uint16


def test_a_large_case_reports_progress_over_all_its_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm

    from medtoken.inference.options import PredictOptions
    from medtoken.inference.predict import predict_array
    from medtoken.models.checkpoint import LoadedModel

    bars: list[dict[str, int]] = []

    class Bar:
        def __init__(self, total: int, **_: object) -> None:
            bars.append({"total": total, "done": 0, "closed": 0})

        def update(self, n: int) -> None:
            bars[-1]["done"] += n

        def close(self) -> None:
            bars[-1]["closed"] = 1

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    model = create_model("unet3d", channels=[4, 8], roi_size=[16, 16, 16]).eval()
    loaded = LoadedModel(model=model, path=Path("m"), state={
        "dataset": {"normalization": {"schemes": ["zscore"], "ct_stats": [None]}}})
    image = np.random.default_rng(0).random((1, 40, 40, 24), dtype=np.float32)
    predict_array(loaded, image, PredictOptions(progress=True, tta=True))
    assert bars == [{"total": 4 * 4 * 2 * 8, "done": 4 * 4 * 2 * 8, "closed": 1}]
    predict_array(loaded, image[:, :16, :16, :16], PredictOptions(progress=True))
    assert len(bars) == 1  # one window: no bar
