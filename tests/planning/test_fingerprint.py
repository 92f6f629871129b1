"""Dataset fingerprint: nnU-Net's axis order, crop, sampling; refusals that name the case."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtoken.data.datasets import load_dataset
from medtoken.data.io import read_image, read_label
from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.planning.axes import medtoken_axis, to_nnunet_axes
from medtoken.planning.fingerprint import extract_fingerprint, nonzero_bbox
from medtoken.utils.errors import InputError


def test_nonzero_bbox_spans_every_channel() -> None:
    image = np.zeros((2, 5, 6, 7), np.float32)
    image[0, 1, 2, 3] = 1.0
    image[1, 3, 4, 5] = -2.0
    assert nonzero_bbox(image) == (slice(1, 4), slice(2, 5), slice(3, 6))
    assert nonzero_bbox(np.zeros((1, 3, 3))) == (slice(None), slice(None))


def test_nnunet_axes_of_nifti_and_png() -> None:
    volume = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)  # (C, x, y, z)
    out, spacing = to_nnunet_axes(volume, (0.5, 0.7, 3.0), ".nii.gz")
    assert out.shape == (1, 4, 3, 2) and spacing == (3.0, 0.7, 0.5)
    assert out[0, 3, 2, 1] == volume[0, 1, 2, 3]
    picture = np.zeros((3, 5, 6), np.float32)  # (C, H, W)
    out, spacing = to_nnunet_axes(picture, (1.0, 1.0), ".png")
    assert out.shape == (3, 1, 5, 6) and spacing == (999.0, 1.0, 1.0)
    assert [medtoken_axis(k, "SimpleITKIO") for k in range(3)] == [2, 1, 0]
    assert [medtoken_axis(k, "NaturalImage2DIO") for k in (1, 2)] == [0, 1]


def test_fingerprint_of_a_3d_dataset(tmp_path: Path) -> None:
    info = load_dataset(make_synthetic_dataset(tmp_path / "d", num_cases=3))
    fp = extract_fingerprint(info, num_foreground_voxels=3000)
    assert fp.image_reader_writer == "SimpleITKIO"
    for case, cf in zip(info.cases, fp.cases, strict=True):
        image, meta = read_image(case.images)
        assert cf.spacing == pytest.approx(meta.spacing[::-1])
        box = nonzero_bbox(image)
        cropped = tuple(len(range(*b.indices(n))) for b, n in zip(box, image.shape[1:],
                                                                   strict=True))
        assert cf.shape_after_crop == cropped[::-1]
    # the samples are nnU-Net's: RandomState(1234) per case, drawn in (z, y, x) C order
    expected = []
    for case in info.cases:
        image, meta = read_image(case.images)
        labels = read_label(case.label)[0]
        image_nn = to_nnunet_axes(image, meta.spacing, meta.file_ending)[0][0]
        labels_nn = to_nnunet_axes(labels[None], meta.spacing, meta.file_ending)[0][0]
        pixels = image_nn[labels_nn > 0]  # synthetic images have no zero voxels: no crop
        expected.append(np.random.RandomState(1234).choice(pixels, 1000, replace=True))
    values = np.concatenate(expected)
    props = fp.foreground_intensity_properties_per_channel[0]
    assert props["mean"] == float(np.mean(values))
    assert props["std"] == float(np.std(values))
    # nnU-Net passes the percentiles as a float64 array, which interpolates in float64
    lo, median, hi = np.percentile(values, np.array((0.5, 50.0, 99.5)))
    assert (props["percentile_00_5"], props["median"], props["percentile_99_5"]) == (
        float(lo), float(median), float(hi))
    assert props["min"] == float(values.min()) and props["max"] == float(values.max())
    d = fp.to_dict()
    assert sorted(d) == ["foreground_intensity_properties_per_channel",
                         "median_relative_size_after_cropping", "shapes_after_crop", "spacings"]


def test_fingerprint_of_a_2d_folder(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=2, layout="folder2d")
    info = load_dataset(root)
    fp = extract_fingerprint(info, num_foreground_voxels=100)
    assert fp.image_reader_writer == "NaturalImage2DIO"
    shape = read_image(info.cases[0].images)[1].spatial_shape
    assert fp.cases[0].spacing == (999.0, 1.0, 1.0)
    assert fp.cases[0].shape_after_crop[0] == 1
    assert fp.cases[0].shape_after_crop[1:] <= shape


def _zero_pixdim(path: Path, axis: int) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76 + 4 * (axis + 1):80 + 4 * (axis + 1)] = bytes(4)  # pixdim[axis + 1] = 0.0
    path.write_bytes(gzip.compress(bytes(raw)))


def test_zero_spacing_is_refused_naming_the_case(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=3)
    _zero_pixdim(root / "imagesTr" / "case_001_0000.nii.gz", 2)
    with pytest.raises(InputError, match=r"case case_001: voxel size .* is missing or zero") as e:
        extract_fingerprint(load_dataset(root), num_foreground_voxels=300)
    assert e.value.where is not None and e.value.where.endswith("case_001_0000.nii.gz")


def test_channels_of_different_shapes_are_refused_naming_the_case(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2, num_channels=2)
    path = root / "imagesTr" / "case_000_0001.nii.gz"
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), str(path))
    with pytest.raises(InputError, match=r"case case_000: shape .* differs"):
        extract_fingerprint(load_dataset(root), num_foreground_voxels=300)


def test_label_of_another_shape_is_refused(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2)
    shutil.copy(root / "labelsTr" / "case_000.nii.gz", root / "labelsTr" / "case_001.nii.gz")
    info = load_dataset(root)
    if read_image(info.cases[0].images)[1].spatial_shape == read_image(
            info.cases[1].images)[1].spatial_shape:
        pytest.skip("the synthetic cases happen to share a shape")
    with pytest.raises(InputError, match="case case_001: label shape"):
        extract_fingerprint(info, num_foreground_voxels=300)
