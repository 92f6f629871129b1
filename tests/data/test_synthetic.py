"""Synthetic datasets: determinism, layouts, geometry variety and learnable content."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medtoken.data.check import check_dataset
from medtoken.data.datasets import load_dataset
from medtoken.data.io import read_image, read_label
from medtoken.data.synthetic import make_synthetic_case, make_synthetic_dataset


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("spatial_dims", "layout", "num_channels"), [
    (3, "nnunet", 1), (2, "nnunet", 2), (3, "msd", 2), (2, "folder2d", 1), (2, "folder2d", 3),
])
def test_same_seed_same_bytes(tmp_path: Path, spatial_dims: int, layout: str,
                              num_channels: int) -> None:
    kwargs = dict(spatial_dims=spatial_dims, num_cases=3, layout=layout,
                  num_channels=num_channels)
    first = _file_bytes(make_synthetic_dataset(tmp_path / "a", seed=5, **kwargs))
    second = _file_bytes(make_synthetic_dataset(tmp_path / "b", seed=5, **kwargs))
    assert first == second
    other = _file_bytes(make_synthetic_dataset(tmp_path / "c", seed=6, **kwargs))
    assert other.keys() == first.keys() and other != first


def test_different_seeds_give_different_arrays() -> None:
    a, la, _ = make_synthetic_case(0, 0)
    b, _, _ = make_synthetic_case(1, 0)
    assert a.shape != b.shape or not np.array_equal(a, b)
    c, lc, _ = make_synthetic_case(0, 0)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(la, lc)


@pytest.mark.parametrize(("spatial_dims", "layout", "num_channels"), [
    (3, "nnunet", 1), (3, "msd", 1), (3, "msd", 2), (2, "nnunet", 1), (2, "folder2d", 3),
])
def test_layouts_load_and_pass_the_check(tmp_path: Path, spatial_dims: int, layout: str,
                                         num_channels: int) -> None:
    root = make_synthetic_dataset(tmp_path / "ds", spatial_dims=spatial_dims, num_cases=4,
                                  layout=layout, num_channels=num_channels)
    info, problems = check_dataset(root)
    assert problems == [] and info is not None
    assert info.layout == layout and info.spatial_dims == spatial_dims
    assert len(info.cases) == 4 and info.num_channels == num_channels and info.num_classes == 3


def test_folder2d_names_have_spaces_and_parentheses(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", spatial_dims=2, num_cases=2, layout="folder2d")
    assert sorted(p.name for p in (root / "images").iterdir()) == ["case (0).png", "case (1).png"]


def test_geometry_varies(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=12)
    metas = [read_image(c.images)[1] for c in load_dataset(root).cases]
    assert all(24 <= n <= 40 for m in metas for n in m.spatial_shape)
    assert all(0.7 <= s <= 1.5 for m in metas for s in m.spacing)
    assert len({m.spatial_shape for m in metas}) > 6
    assert any(max(m.spacing) - min(m.spacing) > 0.05 for m in metas)  # anisotropic
    assert any(abs(m.spacing[0] - m.spacing[1]) < 1e-6 for m in metas)  # isotropic
    oblique = [m for m in metas if np.abs(m.affine[:3, :3] - np.diag(m.spacing)).max() > 1e-3]
    assert 0 < len(oblique) < len(metas)
    assert len({tuple(np.round(m.affine[:3, 3], 3)) for m in metas}) == len(metas)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_structures_touch_and_are_visible(spatial_dims: int) -> None:
    for index in range(6):
        image, labels, _ = make_synthetic_case(0, index, spatial_dims, num_channels=2)
        assert set(np.unique(labels)) == {0, 1, 2}
        assert (ndimage.binary_dilation(labels == 1) & (labels == 2)).any()  # shared boundary
        means = [float(image[0][labels == k].mean()) for k in range(3)]
        spread = 0.75 * float(image[0][labels == 0].std())  # texture + bias + noise
        assert means[1] - means[0] > spread and means[0] - means[2] > spread  # bright / dark
        means1 = [float(image[1][labels == k].mean()) for k in range(3)]
        assert means1[1] < means1[0] < means1[2]  # the second channel inverts the contrast


def test_labels_files_match_images(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "d", num_cases=2, layout="msd", num_channels=2)
    case = load_dataset(root).cases[1]
    image, meta = read_image(case.images)
    assert case.label is not None
    labels, label_meta = read_label(case.label)
    assert image.shape == (2, *labels.shape)
    np.testing.assert_allclose(label_meta.affine, meta.affine, atol=1e-6)


def test_twelve_3d_cases_are_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_synthetic_dataset(tmp_path / "d", num_cases=12)
    assert time.perf_counter() - start < 5.0  # about 0.4 s on one idle core


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layout": "other"}, "layout must be one of"),
    ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
    ({"layout": "folder2d", "spatial_dims": 3}, "needs spatial_dims=2"),
    ({"layout": "folder2d", "spatial_dims": 2, "num_channels": 2}, "1 \\(gray\\) or 3"),
    ({"num_cases": 0}, "num_cases must be >= 1"),
])
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_synthetic_dataset(tmp_path / "d", **kwargs)  # type: ignore[arg-type]
