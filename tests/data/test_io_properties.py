"""Property tests of the readers: arbitrary shapes, dtypes, affines and values either load exactly
as written by nibabel or Pillow (array, spacing, affine), or raise the documented InputError."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from medtoken.data.io import ImageMeta, read_image, read_label, write_label
from medtoken.utils.errors import InputError

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]
_sizes = st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple)


@st.composite
def _affines(draw: st.DrawFn) -> np.ndarray:
    """Rotation (from a random unit quaternion) x positive spacing + translation."""
    q = np.array(draw(st.tuples(*[st.floats(-1, 1)] * 4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    spacing = draw(st.tuples(*[st.floats(0.1, 5.0)] * 3))
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = draw(st.tuples(*[st.floats(-200, 200)] * 3))
    return affine


@st.composite
def _volumes(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(_sizes)
    if draw(st.booleans()) and len(shape) == 3:
        shape = (*shape, draw(st.integers(2, 3)))  # (X, Y, Z, C): an MSD multi-channel image
    if dtype.kind == "f":
        elements = st.floats(-1e4, 1e4, width=32)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(max(int(info.min), -(2**20)), min(int(info.max), 2**20))
    return draw(arrays(dtype, shape, elements=elements))


@SETTINGS
@given(volume=_volumes(), affine=_affines())
def test_nifti_written_by_nibabel_reads_back_exactly(volume: np.ndarray, affine: np.ndarray,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    image, meta = read_image(path)
    expected = volume[None] if volume.ndim <= 3 else np.moveaxis(volume, -1, 0)  # (C, *S)
    assert image.dtype == np.float32 and image.shape == expected.shape
    np.testing.assert_array_equal(image, expected.astype(np.float32))
    spatial = min(volume.ndim, 3)
    assert meta.spatial_shape == expected.shape[1:] and meta.spatial_dims == spatial
    stored = nib.load(str(path)).affine  # the header keeps the affine in float32
    np.testing.assert_allclose(meta.affine, stored, rtol=0, atol=1e-9)
    np.testing.assert_allclose(meta.affine, affine, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(meta.spacing, np.linalg.norm(affine[:3, :spatial], axis=0),
                               rtol=1e-5)


@st.composite
def _label_arrays(draw: st.DrawFn) -> np.ndarray:
    """Integer-valued label maps of several stored dtypes, some beyond the int16 range."""
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.int16, np.int32, np.float32])))
    lo, hi = (-40000, 40000) if dtype.itemsize == 4 else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    values = st.integers(int(lo), int(hi)) | st.integers(0, 3)  # mostly small labels
    return draw(arrays(dtype, _sizes, elements=values))


@SETTINGS
@given(labels=_label_arrays(), affine=_affines())
def test_label_maps_read_back_or_are_refused_as_out_of_range(labels: np.ndarray,
                                                             affine: np.ndarray,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), str(path))
    lo, hi = int(labels.min()), int(labels.max())
    if lo < -(2**15) or hi >= 2**15:
        with pytest.raises(InputError, match=r"label\.nii\.gz: label values .* out of range"):
            read_label(path)
        return
    read, meta = read_label(path)
    assert read.dtype == (np.uint8 if lo >= 0 and hi <= 255 else np.int16)
    np.testing.assert_array_equal(read, labels)
    write_label(read if lo >= 0 else np.clip(read, 0, None), meta, tmp_path / "copy.nii.gz")
    again, again_meta = read_label(tmp_path / "copy.nii.gz")  # medtoken's own writer
    np.testing.assert_array_equal(again, np.clip(labels, 0, None))
    np.testing.assert_allclose(again_meta.affine, meta.affine, atol=1e-5)


@SETTINGS
@given(values=arrays(np.float32, _sizes, elements=st.floats(-3, 3, width=32)
                     | st.sampled_from([np.float32(np.nan), np.float32(0.5)])))
def test_non_integer_label_values_are_refused(values: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(path))
    if np.isnan(values).any():
        with pytest.raises(InputError, match="NaN or Inf"):
            read_label(path)
    elif (values != np.rint(values)).any():
        with pytest.raises(InputError, match="label values must be integers"):
            read_label(path)
    else:
        np.testing.assert_array_equal(read_label(path)[0], values)


@SETTINGS
@given(pixels=st.one_of(
    arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6))),
    arrays(np.uint16, st.tuples(st.integers(1, 6), st.integers(1, 6))),
    arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)))))
def test_png_written_by_pillow_reads_back_exactly(pixels: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    image, meta = read_image(path)
    expected = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)  # (C, H, W)
    np.testing.assert_array_equal(image, expected.astype(np.float32))
    assert meta.spacing == (1.0, 1.0) and meta.spatial_shape == pixels.shape[:2]
    np.testing.assert_array_equal(meta.affine, np.eye(4))


def _valid_file(tmp_path: Path, ending: str) -> bytes:
    path = tmp_path / f"valid{ending}"
    if ending == ".png":
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    else:
        nib.save(nib.Nifti1Image(np.arange(512, dtype=np.float32).reshape(8, 8, 8), np.eye(4)),
                 str(path))
    return path.read_bytes()


@SETTINGS
@given(ending=st.sampled_from([".nii.gz", ".nii", ".png"]), cut=st.floats(0.0, 0.999),
       garbage=st.binary(max_size=64))
def test_corrupt_files_raise_input_error_naming_the_file(ending: str, cut: float, garbage: bytes,
                                                         tmp_path: Path) -> None:
    """A truncated valid file, or bytes replaced by garbage: InputError, never another error."""
    data = _valid_file(tmp_path, ending)
    start = math.floor(len(data) * cut)
    for content in (data[:start], data[:start] + garbage):
        path = tmp_path / f"broken{ending}"
        path.write_bytes(content)
        try:
            image, _ = read_image(path)
        except InputError as err:
            assert err.where == str(path) and "\n" not in str(err)
        else:  # garbage that still decodes (a valid prefix) must at least be a real image
            assert image.ndim in (3, 4) and image.size > 0


@pytest.mark.parametrize("shape", [(2, 2, 2, 2, 2, 2), (3, 3, 3, 2, 2)])
def test_nifti_of_unsupported_dimensionality_is_an_input_error(shape: tuple[int, ...],
                                                               tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))
    with pytest.raises(InputError, match="unsupported NIfTI shape"):
        read_image(path)


def test_meta_of_written_label_is_unchanged_by_a_round_trip(tmp_path: Path) -> None:
    meta = ImageMeta((3, 4, 5), (0.5, 1.0, 2.0), np.diag([0.5, 1.0, 2.0, 1.0]), ".nii.gz", "x")
    write_label(np.ones((3, 4, 5), np.uint8), meta, tmp_path / "a.nii.gz")
    _, read = read_label(tmp_path / "a.nii.gz")
    assert read.spacing == (0.5, 1.0, 2.0) and read.spatial_shape == (3, 4, 5)
