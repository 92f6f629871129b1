"""Image and label I/O: NIfTI, PNG and SimpleITK round trips, geometry, errors."""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medtoken.data.headers import peek_spatial_dims
from medtoken.data.io import (
    ImageMeta,
    read_image,
    read_label,
    split_file_ending,
    write_image,
    write_label,
)
from medtoken.utils.errors import InputError


def _oblique_affine(spacing: tuple[float, float, float] = (0.8, 1.3, 2.5)) -> np.ndarray:
    """Rotation by 20 deg about z and 10 deg about x, anisotropic spacing, non-zero origin."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = [12.5, -40.0, 7.25]
    return affine


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, qform_code: int = 1,
                 sform_code: int = 4) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=qform_code)
    img.header.set_sform(affine, code=sform_code)
    nib.save(img, str(path))
    return path


@pytest.fixture
def oblique_nifti(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).normal(100.0, 20.0, (7, 6, 5)).astype(np.float32)
    return _write_nifti(tmp_path / "scan (1) a.nii.gz", data, _oblique_affine())


@pytest.mark.parametrize(("name", "expected"), [
    ("benign (12).png", ("benign (12)", ".png")),
    ("case_001_0000.nii.gz", ("case_001_0000", ".nii.gz")),
    ("a.b.nii", ("a.b", ".nii")),
    ("x.NRRD", ("x", ".NRRD")),
    ("notes.txt", ("notes", ".txt")),
    ("noext", ("noext", "")),
])
def test_split_file_ending(name: str, expected: tuple[str, str]) -> None:
    assert split_file_ending(Path("/some dir") / name) == expected


def test_nifti_round_trip_keeps_array_spacing_affine_and_codes(oblique_nifti: Path,
                                                               tmp_path: Path) -> None:
    digest = hashlib.sha256(oblique_nifti.read_bytes()).hexdigest()
    image, meta = read_image(oblique_nifti)
    assert image.shape == (1, 7, 6, 5) and image.dtype == np.float32
    assert meta.spatial_dims == 3 and meta.file_ending == ".nii.gz"
    np.testing.assert_allclose(meta.spacing, (0.8, 1.3, 2.5), rtol=1e-6)
    np.testing.assert_allclose(meta.affine, _oblique_affine(), atol=1e-5)

    write_image(image, meta, tmp_path / "out (2).nii.gz")
    again, meta2 = read_image(tmp_path / "out (2).nii.gz")
    np.testing.assert_array_equal(again, image)
    np.testing.assert_allclose(meta2.affine, meta.affine, atol=1e-6)
    assert meta2.spacing == meta.spacing
    labels = (image[0] > 100).astype(np.int64) + (image[0] > 120)
    write_label(labels, meta, tmp_path / "seg.nii.gz")
    saved = nib.load(str(tmp_path / "seg.nii.gz"))
    assert saved.get_data_dtype() == np.uint8
    assert (int(saved.header["qform_code"]), int(saved.header["sform_code"])) == (1, 4)
    np.testing.assert_allclose(saved.header.get_sform(), _oblique_affine(), atol=1e-5)
    np.testing.assert_allclose(saved.header.get_qform(), _oblique_affine(), atol=1e-5)
    read_back, _ = read_label(tmp_path / "seg.nii.gz")
    np.testing.assert_array_equal(read_back, labels)
    assert hashlib.sha256(oblique_nifti.read_bytes()).hexdigest() == digest  # input untouched


@pytest.mark.parametrize(("max_label", "dtype"), [(2, np.uint8), (255, np.uint8),
                                                  (300, np.uint16)])
def test_write_label_picks_dtype(tmp_path: Path, max_label: int, dtype: type) -> None:
    meta = ImageMeta((4, 3, 2), (1.0, 1.0, 1.0), np.eye(4), ".nii.gz", "mem")
    labels = np.zeros((4, 3, 2), dtype=np.int64)
    labels[1, 1, 1] = max_label
    write_label(labels, meta, tmp_path / "l.nii.gz")
    assert nib.load(str(tmp_path / "l.nii.gz")).get_data_dtype() == dtype
    assert read_label(tmp_path / "l.nii.gz")[0].max() == max_label


def test_4d_nifti_channels_move_first(tmp_path: Path) -> None:
    data = np.stack([np.full((4, 5, 6), float(c)) for c in range(3)], axis=-1)  # (X, Y, Z, C)
    path = _write_nifti(tmp_path / "mm.nii.gz", data.astype(np.float32), _oblique_affine())
    image, meta = read_image(path)
    assert image.shape == (3, 4, 5, 6) and meta.spatial_shape == (4, 5, 6)
    assert [float(image[c].mean()) for c in range(3)] == [0.0, 1.0, 2.0]
    write_image(image, meta, tmp_path / "mm2.nii.gz")
    assert nib.load(str(tmp_path / "mm2.nii.gz")).shape == (4, 5, 6, 3)
    write_label(np.ones((4, 5, 6), np.uint8), meta, tmp_path / "seg.nii.gz")  # 4D meta, 3D labels
    labels, label_meta = read_label(tmp_path / "seg.nii.gz")
    assert labels.shape == (4, 5, 6) and label_meta.spacing == meta.spacing
    np.testing.assert_allclose(label_meta.affine, meta.affine, atol=1e-6)


def test_several_paths_are_channels_and_must_share_geometry(tmp_path: Path) -> None:
    affine = _oblique_affine()
    a = _write_nifti(tmp_path / "c_0000.nii.gz", np.zeros((4, 4, 4), np.float32), affine)
    b = _write_nifti(tmp_path / "c_0001.nii.gz", np.ones((4, 4, 4), np.float32), affine)
    image, _ = read_image([a, b])
    assert image.shape == (2, 4, 4, 4) and image[1].min() == 1.0
    shifted = affine.copy()
    shifted[0, 3] += 1.0
    c = _write_nifti(tmp_path / "c_0002.nii.gz", np.ones((4, 4, 4), np.float32), shifted)
    with pytest.raises(InputError, match=r"c_0002\.nii\.gz: affine differs"):
        read_image([a, c])
    d = _write_nifti(tmp_path / "c_0003.nii.gz", np.ones((4, 4, 5), np.float32), affine)
    with pytest.raises(InputError, match=r"c_0003.nii.gz: shape \(4, 4, 5\) differs"):
        read_image([a, d])


def test_non_integer_labels_are_an_input_error(tmp_path: Path) -> None:
    path = _write_nifti(tmp_path / "bad label.nii.gz", np.full((3, 3, 3), 0.5, np.float32),
                        np.eye(4))
    with pytest.raises(InputError, match=r"bad label.nii.gz: label values must be integers"):
        read_label(path)


def _truncated_gz(path: Path, src: Path) -> Path:
    path.write_bytes(src.read_bytes()[:200])
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage_png", "garbage_gz", "missing"])
def test_unreadable_files_name_the_file(tmp_path: Path, oblique_nifti: Path, kind: str) -> None:
    if kind == "empty":
        path = tmp_path / "empty (1).nii.gz"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = _truncated_gz(tmp_path / "cut.nii.gz", oblique_nifti)
    elif kind == "garbage_png":
        path = tmp_path / "junk.png"
        path.write_bytes(b"not a png at all")
    elif kind == "garbage_gz":
        path = tmp_path / "junk.nii.gz"
        path.write_bytes(gzip.compress(b"x" * 400))
    else:
        path = tmp_path / "absent.nii.gz"
    with pytest.raises(InputError) as info:
        read_image(path)
    assert info.value.where == str(path)
    expected = "file not found" if kind == "missing" else "cannot read image"
    assert expected in info.value.problem
    with pytest.raises(InputError):
        read_label(path)


def test_unsupported_ending(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "a.txt")


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("RGBA", 3)])
def test_png_images(tmp_path: Path, mode: str, channels: int) -> None:
    rng = np.random.default_rng(1)
    shape = (5, 7) if mode == "L" else (5, 7, len(mode))
    data = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(data, mode=mode).save(tmp_path / "benign (3).png")
    image, meta = read_image(tmp_path / "benign (3).png")
    assert image.shape == (channels, 5, 7)  # (C, H, W)
    assert meta.spacing == (1.0, 1.0) and meta.spatial_dims == 2
    np.testing.assert_array_equal(meta.affine, np.eye(4))
    expected = data[None] if mode == "L" else np.moveaxis(data[..., :3], -1, 0)
    np.testing.assert_array_equal(image, expected.astype(np.float32))
    write_image(image, meta, tmp_path / "copy.png")
    np.testing.assert_array_equal(read_image(tmp_path / "copy.png")[0], image)


def test_png_label_round_trip(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int32)
    meta = ImageMeta((2, 3), (1.0, 1.0), np.eye(4), ".png", "mem")
    write_label(labels, meta, tmp_path / "seg (1).png")
    with Image.open(tmp_path / "seg (1).png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), labels)
    read_back, _ = read_label(tmp_path / "seg (1).png")
    assert read_back.dtype == np.uint8
    np.testing.assert_array_equal(read_back, labels)


@pytest.mark.parametrize(("values", "expected"), [
    ([0, 255], [0, 1]),  # binary 0/255 mask
    ([0, 0], [0, 0]),
    ([0, 1], [0, 1]),
    ([0, 128], [0, 128]),  # integer labels as they are
])
def test_mask_values(tmp_path: Path, values: list[int], expected: list[int]) -> None:
    Image.fromarray(np.array([values], dtype=np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_label(tmp_path / "m.png")[0], [expected])


def test_rgb_and_palette_masks(tmp_path: Path) -> None:
    gray = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_label(tmp_path / "rgb.png")[0], gray // 255)
    colour = np.stack([gray, gray // 2, gray], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match=r"colour\.png: a label map must have one channel"):
        read_label(tmp_path / "colour.png")
    palette = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_label(tmp_path / "pal.png")[0], [[0, 1], [2, 1]])


def test_sitk_nrrd_round_trip(oblique_nifti: Path, tmp_path: Path) -> None:
    pytest.importorskip("SimpleITK")
    image, meta = read_image(oblique_nifti)
    write_image(image, meta, tmp_path / "vol (1).nrrd")
    again, meta2 = read_image(tmp_path / "vol (1).nrrd")
    np.testing.assert_array_equal(again, image)
    np.testing.assert_allclose(meta2.affine, meta.affine, atol=1e-5)
    np.testing.assert_allclose(meta2.spacing, meta.spacing, rtol=1e-6)
    labels = (image[0] > 100).astype(np.uint8)
    write_label(labels, meta2, tmp_path / "seg.nrrd")
    read_back, meta3 = read_label(tmp_path / "seg.nrrd")
    np.testing.assert_array_equal(read_back, labels)
    np.testing.assert_allclose(meta3.affine, meta.affine, atol=1e-5)


def test_nibabel_and_sitk_agree_on_nifti(oblique_nifti: Path) -> None:
    pytest.importorskip("SimpleITK")
    by_nib, meta_nib = read_image(oblique_nifti)
    by_itk, meta_itk = read_image(oblique_nifti, backend="simpleitk")
    np.testing.assert_array_equal(by_itk, by_nib)
    np.testing.assert_allclose(meta_itk.affine, meta_nib.affine, atol=1e-5)
    assert meta_itk.spatial_shape == meta_nib.spatial_shape


def test_missing_simpleitk_gives_install_hint(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.nrrd").write_bytes(b"NRRD0004\n")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # makes `import SimpleITK` fail
    with pytest.raises(InputError, match=r"needs SimpleITK: pip install 'medtoken\[itk\]'"):
        read_image(tmp_path / "a.nrrd")


def test_peek_spatial_dims(oblique_nifti: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "a.png")
    assert peek_spatial_dims(oblique_nifti) == 3
    assert peek_spatial_dims(tmp_path / "a.png") == 2
    assert peek_spatial_dims(tmp_path / "missing.nii.gz") is None


def test_write_checks_shape() -> None:
    meta = ImageMeta((4, 3), (1.0, 1.0), np.eye(4), ".png", "mem")
    with pytest.raises(ValueError, match="spatial_shape"):
        write_label(np.zeros((3, 4), np.uint8), meta, Path("unused.png"))
    with pytest.raises(ValueError, match="spacing"):
        ImageMeta((4, 3), (1.0,), np.eye(4), ".png", "mem")


def test_smallest_label_dtype() -> None:
    from medtoken.data.io import smallest_label_dtype

    assert smallest_label_dtype(0) == np.uint8 and smallest_label_dtype(255) == np.uint8
    assert smallest_label_dtype(256) == np.uint16
