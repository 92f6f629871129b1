"""Largest connected component on hand-made 2D and 3D label maps."""

from __future__ import annotations

import numpy as np

from medtoken.postprocessing.components import remove_all_but_largest_component


def test_2d_removes_smaller_component_and_keeps_other_labels() -> None:
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[1:4, 1:4] = 1  # 9 pixels
    labels[6, 6] = 1  # spurious pixel
    labels[6, 1] = 2  # another label, not in the group
    before = labels.copy()
    out = remove_all_but_largest_component(labels, [1])
    assert out[6, 6] == 0 and out[6, 1] == 2
    assert np.array_equal(out[1:4, 1:4], before[1:4, 1:4])
    assert np.array_equal(labels, before)  # input untouched
    assert out.dtype == labels.dtype


def test_2d_diagonal_neighbours_are_one_component() -> None:
    labels = np.zeros((5, 5), dtype=np.uint8)
    labels[0:2, 0:2] = 1
    labels[2, 2] = 1  # touches (1, 1) at a corner: 8-connected, as nnU-Net (skimage default)
    out = remove_all_but_largest_component(labels, [1])
    assert out[2, 2] == 1


def test_3d_corner_neighbours_are_one_component_and_far_blob_goes() -> None:
    labels = np.zeros((6, 6, 6), dtype=np.int16)
    labels[0:2, 0:2, 0:2] = 3
    labels[2, 2, 2] = 3  # corner contact: 26-connected
    labels[5, 5, 0] = 3  # separate
    out = remove_all_but_largest_component(labels, [3])
    assert out[2, 2, 2] == 3 and out[5, 5, 0] == 0
    assert int((out == 3).sum()) == 9


def test_group_joins_labels_into_one_mask() -> None:
    labels = np.zeros((4, 10), dtype=np.uint8)
    labels[1, 0:3] = 1
    labels[1, 3:6] = 2  # touches label 1: one component of {1, 2}
    labels[1, 8] = 2  # far away
    out = remove_all_but_largest_component(labels, [1, 2])
    assert out[1, 8] == 0 and np.array_equal(out[1, 0:6], labels[1, 0:6])


def test_tied_largest_components_are_all_kept_and_empty_is_a_copy() -> None:
    labels = np.zeros((3, 9), dtype=np.uint8)
    labels[1, 0:2] = 1
    labels[1, 5:7] = 1
    assert np.array_equal(remove_all_but_largest_component(labels, [1]), labels)
    empty = np.zeros((3, 3), dtype=np.uint8)
    out = remove_all_but_largest_component(empty, [1])
    assert np.array_equal(out, empty) and out is not empty
