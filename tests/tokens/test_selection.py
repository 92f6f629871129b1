"""Importance scoring, top-K selection, reprojection and boundary bands."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy import ndimage

from medtoken.tokens.indexing import gather_tokens
from medtoken.tokens.selection import (
    boundary_band,
    boundary_hit_fraction,
    box_sums,
    cell_boxes,
    codebook_diversity,
    importance_score,
    minmax_normalize,
    random_topk,
    reproject_tokens,
    select_topk,
    sobel_magnitude,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads; on a shared CPU, OpenMP barriers cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("k", [1, 7, 20])
def test_select_topk_unique_highest_first(k: int) -> None:
    scores = torch.randn(3, 20)
    idx = select_topk(scores, k)
    assert idx.shape == (3, k)
    assert all(len(set(row.tolist())) == k for row in idx)
    picked = scores.gather(1, idx)
    assert (picked[:, :-1] >= picked[:, 1:]).all()
    assert (picked[:, -1:] >= scores.sort(-1, descending=True).values[:, k - 1:k]).all()


def test_select_topk_ties_go_to_lower_index() -> None:
    scores = torch.tensor([[0.5, 1.0, 0.5, 0.5, 1.0, 0.5]])
    assert select_topk(scores, 4).tolist() == [[1, 4, 0, 2]]
    assert select_topk(torch.zeros(2, 9), 3).tolist() == [[0, 1, 2]] * 2


@pytest.mark.parametrize("k", [0, 11])
def test_select_topk_rejects_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        select_topk(torch.randn(1, 10), k)


def test_random_topk_unique_and_seeded() -> None:
    def draw() -> torch.Tensor:
        return random_topk(4, 30, 10, generator=torch.Generator().manual_seed(3))

    idx = draw()
    assert idx.shape == (4, 10) and idx.max() < 30
    assert all(len(set(row.tolist())) == 10 for row in idx)
    assert torch.equal(idx, draw())


def test_reproject_then_gather_round_trip() -> None:
    """Spec §8.1 test 9: gather(scatter(z)) = z; the rest holds the fill; occupancy sums to K."""
    selected, fill = torch.randn(2, 5, 4), torch.randn(12, 4)
    idx = torch.stack([torch.randperm(12)[:5] for _ in range(2)])
    tokens, occupancy = reproject_tokens(selected, idx, fill)
    assert torch.equal(gather_tokens(tokens, idx), selected)
    assert occupancy.sum(-1).tolist() == [5.0, 5.0]
    empty = occupancy == 0  # (B, N)
    assert torch.equal(tokens[empty], fill.expand(2, -1, -1)[empty])


def test_gate_passes_gradient_to_scores() -> None:
    tokens = torch.randn(2, 6, 3)
    scores = torch.rand(2, 6, requires_grad=True)
    idx = select_topk(scores, 2)
    gather_tokens(tokens, idx, scores).sum().backward()
    assert scores.grad is not None
    assert (scores.grad != 0).sum().item() == 4  # exactly the selected entries


def test_minmax_normalize_range_and_constant_rows() -> None:
    out = minmax_normalize(torch.tensor([[1.0, 3.0, 2.0], [4.0, 4.0, 4.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))


def test_codebook_diversity_hand_case() -> None:
    # counts of each token's code: [2, 2, 1, 1] -> d = 1 - (n - 1) / 3
    d = codebook_diversity(torch.tensor([[7, 7, 1, 2]]))
    torch.testing.assert_close(d, torch.tensor([[2 / 3, 2 / 3, 1.0, 1.0]]))


def test_importance_score_is_the_weighted_sum() -> None:
    a, b, c = torch.rand(2, 5), torch.rand(2, 5), torch.rand(2, 5)
    torch.testing.assert_close(importance_score((a, b, c), (0.5, 0.0, 2.0)), 0.5 * a + 2.0 * c)
    with pytest.raises(ValueError, match="weights"):
        importance_score((a, b), (1.0,))


@pytest.mark.parametrize("spatial", [(9, 10), (6, 7, 8)])
def test_sobel_unit_ramp_and_constant(spatial: tuple[int, ...]) -> None:
    ramp = torch.arange(spatial[-1], dtype=torch.float32).expand(1, 2, *spatial).contiguous()
    mag = sobel_magnitude(ramp)
    assert mag.shape == (1, 1, *spatial)
    torch.testing.assert_close(mag[..., 1:-1], torch.ones_like(mag[..., 1:-1]))
    assert sobel_magnitude(torch.full((1, 1, *spatial), 3.0)).abs().max() == 0


def test_boundary_band_is_the_distance_band() -> None:
    labels = torch.zeros(1, 12, 13, 11, dtype=torch.long)
    labels[0, 3:9, 4:10, 2:8] = 1
    labels[0, 5:7, 5:7, 4:6] = 2  # an inner class: its interface is a boundary too
    surface = boundary_band(labels, radius=0)
    lab = labels[0].numpy()
    assert surface[0].numpy()[lab == 0].sum() == 0  # only foreground voxels
    distance = ndimage.distance_transform_edt(~surface[0].numpy())
    for radius in (1, 2):
        band = boundary_band(labels, radius)[0].numpy()
        assert np.array_equal(band, distance <= radius)


def test_box_sums_match_slicing() -> None:
    volume = torch.rand(2, 7, 8, 9)
    boxes = torch.tensor([[0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6], [6, 7, 8, 7, 8, 9]])
    sums = box_sums(volume, boxes)
    expected = [volume.sum((1, 2, 3)), volume[:, 1:4, 2:5, 3:6].sum((1, 2, 3)),
                volume[:, 6, 7, 8]]
    torch.testing.assert_close(sums, torch.stack(expected, 1).double())


def test_boundary_hit_fraction_hand_case() -> None:
    labels = torch.zeros(1, 1, 20, 20, dtype=torch.long)
    labels[..., 2:6, 2:6] = 1  # surface rows/cols 2..5, band r=2 reaches 0..7
    boxes = torch.tensor([[[0, 0, 4, 4], [10, 10, 20, 20], [8, 8, 10, 10], [6, 6, 9, 9]]])
    fraction = boundary_hit_fraction(boxes, labels, radius=2)
    assert fraction.tolist() == [0.5]  # the first and last boxes meet the band


def test_cell_boxes_tile_the_window_in_raster_order() -> None:
    boxes = cell_boxes((4, 6), (2, 3))
    assert boxes.shape == (6, 4) and boxes.dtype == torch.int64
    assert boxes[1].tolist() == [0, 2, 2, 4]  # second cell: next along the last axis
    cover = torch.zeros(4, 6, dtype=torch.int64)
    for b in boxes:
        cover[b[0]:b[2], b[1]:b[3]] += 1
    assert (cover == 1).all()  # a partition of the window
