"""``medtoken.predict``: the CLI's code path from Python, on arrays and files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import medtoken
from medtoken.data.io import read_image
from medtoken.utils.errors import InputError
from tests.inference.conftest import predict_cli


def test_python_api_equals_the_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    assert predict_cli(tmp_path / "cli", runs["in"], runs["a"]) == 0
    for path in sorted(runs["in"].iterdir()):
        written = np.asarray(nib.load(str(tmp_path / "cli" / path.name)).dataobj)
        image, meta = read_image(path)
        from_array = medtoken.predict(runs["a"], image, meta.spacing)
        assert isinstance(from_array, np.ndarray) and from_array.dtype == np.uint8
        np.testing.assert_array_equal(from_array, written)
        np.testing.assert_array_equal(medtoken.predict(runs["a"], image[0]),
                                      written)  # a single channel may come as (*S)
        labels, probs = medtoken.predict(runs["a"], path, return_probabilities=True)
        np.testing.assert_array_equal(labels, written)
        assert probs.shape == (3, *image.shape[1:])
    twice = medtoken.predict([runs["a"], runs["copy"]], image)
    np.testing.assert_array_equal(twice, medtoken.predict(runs["a"], image))


def test_python_api_refuses_a_wrong_shape_and_bad_options(runs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="not \\(C=1, 3 spatial axes\\)"):
        medtoken.predict(runs["a"], np.zeros((2, 8, 8, 8), np.float32))
    with pytest.raises(InputError, match="--stitching"):
        medtoken.predict(runs["a"], np.zeros((8, 8, 8), np.float32), stitching="tiles")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--accumulate-device: CUDA was requested"):
            medtoken.predict(runs["a"], np.zeros((8, 8, 8), np.float32),
                             accumulate_device="cuda")
    with pytest.raises(InputError, match="spacing"):
        medtoken.predict(runs["a"], np.zeros((8, 8, 8), np.float32), spacing=(1.0, 1.0))




def test_python_api_takes_target_spacing_and_compiles(runs: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from medtoken.inference import predict
    from medtoken.utils.compile import maybe_compile

    image, meta = read_image(sorted(runs["in"].iterdir())[0])
    plain = medtoken.predict(runs["a"], image, meta.spacing)
    native = medtoken.predict(runs["a"], image, meta.spacing, target_spacing="native")
    np.testing.assert_array_equal(native, plain)  # trained at native spacing: the same grid
    with pytest.raises(InputError, match="spacing"):
        medtoken.predict(runs["a"], image, meta.spacing, target_spacing="fine")
    calls: list[bool] = []

    def traced(fn, enabled: bool, **kw):  # dynamo without inductor: fast; record the call
        calls.append(enabled)
        return functools.partial(maybe_compile, backend="eager")(fn, enabled, **kw)

    monkeypatch.setattr(predict, "maybe_compile", traced)
    np.testing.assert_array_equal(medtoken.predict(runs["a"], image, compile=True), plain)
    assert calls == [True]  # the same code as predict --compile, not silently ignored
