"""Resampling: nnU-Net's rules (checked against its own code path written with scikit-image)."""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pytest

from medtoken.data.resample import (
    new_shape_for,
    resample_image,
    resample_label,
    resample_probabilities,
    resize_array,
    separate_z_axis,
)


def _nnunet_resample_data_or_seg(data, new_shape, is_seg, axis, order, do_separate_z):
    """nnU-Net v2's ``resample_data_or_seg`` (order_z=0) and batchgenerators'
    ``resize_segmentation``, with scikit-image, as the reference."""
    from scipy.ndimage import map_coordinates
    from skimage.transform import resize

    def resize_segmentation(seg, shape, order):
        if order == 0:
            return resize(seg.astype(float), shape, order, mode="edge", clip=True,
                          anti_aliasing=False).astype(seg.dtype)
        out = np.zeros(shape, dtype=seg.dtype)
        for c in np.unique(seg):
            m = resize((seg == c).astype(float), shape, order, mode="edge", clip=True,
                       anti_aliasing=False)
            out[m >= 0.5] = c
        return out

    def resize_fn(x, shape, order):
        if is_seg:
            return resize_segmentation(x, shape, order)
        return resize(x, shape, order, mode="edge", anti_aliasing=False)

    shape = np.array(data[0].shape)
    new_shape = np.array(new_shape)
    final = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    data = data.astype(float)
    for c in range(data.shape[0]):
        if not do_separate_z:
            final[c] = resize_fn(data[c], new_shape, order)
            continue
        shape_2d = new_shape[[a for a in range(3) if a != axis]]
        tmp = deepcopy(new_shape)
        tmp[axis] = shape[axis]
        here = np.zeros(tmp)
        for i in range(shape[axis]):
            index = [slice(None)] * 3
            index[axis] = i
            here[tuple(index)] = resize_fn(data[c][tuple(index)], shape_2d, order)
        if shape[axis] != new_shape[axis]:
            grids = np.mgrid[:new_shape[0], :new_shape[1], :new_shape[2]].astype(float)
            for a in range(3):
                grids[a] = here.shape[a] / new_shape[a] * (grids[a] + 0.5) - 0.5
            final[c] = map_coordinates(here, grids, order=0, mode="nearest")
        else:
            final[c] = here
    return final


def _blob(shape: tuple[int, ...]) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = [(n - 1) / 2 for n in shape]
    r = np.sqrt(sum(((g - c) / (n / 3)) ** 2 for g, c, n in zip(grid, centre, shape,
                                                                 strict=True)))
    return (r < 1).astype(np.int16) + (r < 0.5).astype(np.int16)  # labels 0, 1, 2


def test_resize_matches_scikit_image() -> None:
    skimage = pytest.importorskip("skimage.transform")
    a = np.random.default_rng(0).normal(size=(7, 9, 5))
    for order in (0, 1, 3):
        for shape in ((10, 13, 7), (4, 5, 3)):
            np.testing.assert_allclose(resize_array(a, shape, order),
                                       skimage.resize(a, shape, order, mode="edge",
                                                      anti_aliasing=False), atol=1e-12)


@pytest.mark.parametrize(("spacing", "target", "axis"), [
    ((1.0, 1.0, 5.0), (1.0, 1.0, 1.0), 2),   # anisotropic input: z alone by nearest
    ((0.7, 0.7, 0.7), (0.7, 3.0, 0.7), 1),   # anisotropic target
    ((1.0, 1.5, 2.0), (1.0, 1.0, 1.0), None),
])
def test_image_and_label_match_nnunet(spacing, target, axis) -> None:
    pytest.importorskip("skimage")
    assert separate_z_axis(spacing, target) == axis
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 9, 8, 6)).astype(np.float32)
    label = _blob((9, 8, 6))[None]
    shape = new_shape_for(image.shape[1:], spacing, target)
    ref = _nnunet_resample_data_or_seg(image, shape, False, axis, 3, axis is not None)
    np.testing.assert_allclose(resample_image(image, spacing, target), ref, atol=1e-5)
    ref_label = _nnunet_resample_data_or_seg(label, shape, True, axis, 1, axis is not None)
    np.testing.assert_array_equal(resample_label(label, spacing, target), ref_label)


def test_separate_z_needs_a_single_coarse_axis() -> None:
    assert separate_z_axis((0.24, 1.25, 1.25), (1.0, 1.0, 1.0)) is None  # two coarse axes
    assert separate_z_axis((1.0, 1.0), (1.0, 4.0)) is None  # 2D never
    assert separate_z_axis((3.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is None  # ratio 3 is not > 3


def test_data_at_target_spacing_is_returned_untouched() -> None:
    image = np.random.default_rng(2).normal(size=(1, 6, 7, 8)).astype(np.float32)
    before = image.copy()
    assert resample_image(image, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is image
    assert resample_image(image, (1.0, 1.0, 1.0), (1.01, 1.0, 0.99)) is image  # same shape
    label = _blob((6, 7, 8))[None]
    assert resample_label(label, (2.0, 2.0, 2.0), (2.0, 2.0, 2.0)) is label
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize(("spacing", "target"), [((1.0, 1.0, 3.5), (1.0, 1.0, 1.0)),
                                                 ((0.8, 0.9, 1.2), (1.0, 1.0, 1.0)),
                                                 ((1.0, 1.0), (0.5, 0.7))])
def test_resample_and_back_keeps_shape_and_labels(spacing, target) -> None:
    """Labels -> target spacing -> one-hot probabilities back to the input's shape: the shape
    is exact, and at most 2% of the voxels change label (documented in docs/nnunet.md)."""
    shape = (30, 28, 12) if len(spacing) == 3 else (30, 28)
    label = _blob(shape)[None]
    at_target = resample_label(label, spacing, target)
    assert at_target.shape[1:] == new_shape_for(shape, spacing, target)
    probs = np.eye(3, dtype=np.float32)[at_target[0]]  # (*S', 3)
    probs = np.moveaxis(probs, -1, 0)
    back = resample_probabilities(probs, shape, target, spacing).argmax(0)
    assert back.shape == shape
    assert np.mean(back != label[0]) <= 0.02
    assert set(np.unique(back)) == {0, 1, 2}
