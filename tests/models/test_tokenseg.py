"""TokenSeg: structure (spec §8.1 tests 1-12), cells, decoder modes, controls and config rules."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from medtoken.config import from_dict, to_dict
from medtoken.models.tokenseg import (
    DecoderConfig,
    EncoderConfig,
    SelectionConfig,
    TokenSeg,
    TokenSegConfig,
    VQConfig,
)
from medtoken.models.tokenseg.cells import (
    candidate_boxes,
    cell_boxes,
    crop_cells,
    mark_cells,
    paste_cells,
    trim,
)
from medtoken.models.tokenseg.config import input_multiple
from medtoken.models.tokenseg.encoder import CellTokenizer, HierarchicalEncoder
from medtoken.registry import create_model, get_config, list_models
from medtoken.tokens.selection import boundary_hit_fraction

REFERENCE_PATCH = (64, 160, 160)
REFERENCE_GRIDS = ((4, 5, 5),) * 4



def _model(name: str, **overrides: object) -> TokenSeg:
    model = create_model(name, **overrides)
    assert isinstance(model, TokenSeg)
    return model


def _input(model: TokenSeg, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.in_channels, *model.config.roi_size)


def test_encoder_levels_have_strides_2_to_16() -> None:
    """Spec test 1 (narrow widths: the strides do not depend on them)."""
    encoder = HierarchicalEncoder(3, 1, (4, 4, 4, 4))
    with torch.no_grad():
        features = encoder(torch.randn(1, 1, *REFERENCE_PATCH))
    assert len(features) == 4
    for level, feature in enumerate(features, start=1):
        assert feature.shape[2:] == tuple(s // 2**level for s in REFERENCE_PATCH)


def test_tokenizer_gives_400_candidates_of_width_256() -> None:
    """Spec test 2 on the reference patch and grids."""
    tokenizer = CellTokenizer((4, 4, 4, 4), REFERENCE_GRIDS, embed_dim=256)
    features = [torch.randn(1, 4, *(s // 2**lv for s in REFERENCE_PATCH)) for lv in range(1, 5)]
    assert tokenizer(features).shape == (1, 400, 256)
    assert TokenSegConfig().encoder.level_counts == (100, 100, 100, 100)


def test_candidate_boxes_tile_each_level_without_overlap() -> None:
    """Spec test 3: (level, cell, box) per token; same-level boxes are disjoint and tile."""
    boxes = candidate_boxes(REFERENCE_PATCH, REFERENCE_GRIDS)
    assert boxes.shape == (400, 6)
    for level in range(4):
        level_boxes = boxes[100 * level:100 * (level + 1)]
        cover = torch.zeros(REFERENCE_PATCH, dtype=torch.int32)
        for box in level_boxes.tolist():
            cover[box[0]:box[3], box[1]:box[4], box[2]:box[5]] += 1
        assert (cover == 1).all()
    assert boxes[0].tolist() == [0, 0, 0, 16, 32, 32]  # every cell covers 16x32x32 voxels


def test_reference_parameter_count_and_codebook() -> None:
    """Spec tests 4 and 12: codebook 4096 x 256; parameters within 15% of 23.8 M."""
    model = _model("tokenseg3d")  # a CPU build is faster than importing the meta-device machinery
    assert model.vq is not None and model.vq.codebook.shape == (4096, 256)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 23.8e6) <= 0.15 * 23.8e6, count


@pytest.mark.parametrize("name", ["tokenseg_test", "tokenseg2d_test"])
def test_forward_shapes_info_and_losses(name: str) -> None:
    """Spec tests 4, 7 and 10: logits shape, K unique indices, code indices in range."""
    model = _model(name)
    x = _input(model)
    out = model.forward_with_aux(x)
    cfg = model.config
    k, n, d = cfg.selection.num_selected, cfg.encoder.num_candidates, cfg.spatial_dims
    assert out.logits.shape == (2, cfg.num_classes, *cfg.roi_size)
    assert set(out.losses) == {"vq"} and out.losses["vq"].item() >= 0
    info = out.info
    assert info["token_idx"].shape == (2, k)
    assert all(len(set(row.tolist())) == k for row in info["token_idx"])
    assert info["token_box"].shape == (2, k, 2 * d)
    assert torch.equal(info["token_box"], info["candidate_box"][info["token_idx"]])
    assert info["token_level"].min() >= 1 and info["token_level"].max() <= 4
    assert info["code_idx"].shape == (2, n)
    assert info["code_idx"].min() >= 0 and info["code_idx"].max() < cfg.vq.num_codes


def test_selection_is_deterministic_in_eval() -> None:
    """Spec test 7."""
    model = _model("tokenseg_test").eval()
    x = _input(model)
    with torch.no_grad():
        first, second = model.forward_with_aux(x), model.forward_with_aux(x)
    assert torch.equal(first.info["token_idx"], second.info["token_idx"])
    assert torch.equal(first.logits, second.logits)


@pytest.mark.parametrize("method", ["score", "random"])
def test_scorer_gets_gradient_through_the_gate(method: str) -> None:
    """Spec test 8."""
    model = _model("tokenseg2d_test", **{"selection.method": method})
    model.forward_with_aux(_input(model)).logits.pow(2).mean().backward()
    assert model.scorer is not None
    for param in model.scorer.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_reprojection_grids_hold_tokens_mask_and_occupancy() -> None:
    """Spec test 9 through the model: occupancy sums to K, cells hold tokens or the mask."""
    model = _model("tokenseg_test")
    cfg = model.config
    selected = torch.randn(2, cfg.selection.num_selected, cfg.embed_dim)
    idx = torch.stack([torch.randperm(cfg.encoder.num_candidates)[:8] for _ in range(2)])
    grids = model._reproject(selected, idx)
    flat = torch.cat([g.flatten(2) for g in grids], dim=2).transpose(1, 2)  # (B, N, C + 1)
    occupancy, tokens = flat[..., -1], flat[..., :-1]
    assert occupancy.sum(-1).tolist() == [8.0, 8.0]
    assert torch.equal(tokens.gather(1, idx[..., None].expand(-1, -1, 16)), selected)
    assert model.mask_embed is not None
    mask = model.mask_embed[model.level_idx].expand(2, -1, -1)  # (B, N, C)
    assert torch.equal(tokens[occupancy == 0], mask[occupancy == 0])


def test_no_compression_control_equals_dense_bottleneck() -> None:
    """Spec test 11: K = N with VQ off runs; without the gate it is the dense-token U-Net."""
    overrides = {"selection.num_selected": 28, "vq.enabled": False, "selection.gate": False}
    model = _model("tokenseg2d_test", **overrides).eval()
    assert model.vq is None and model.mask_embed is None
    x = _input(model)
    with torch.no_grad():
        features = model.encoder(x)
        tokens, losses, _ = model._tokenize(features)  # (B, N, C): every candidate
        all_idx = torch.arange(28).expand(2, -1)
        logits = model.decoder(x, features, model._reproject(tokens, all_idx))
        assert losses == {}
        torch.testing.assert_close(model(x), logits)
    gated = _model("tokenseg2d_test", **{"selection.num_selected": 28, "vq.enabled": False})
    assert gated(x).shape == (2, 2, 64, 64)


def test_sparse_decoder_chunks_do_not_change_the_output() -> None:
    model = _model("tokenseg_test").eval()
    chunked = _model("tokenseg_test", **{"decoder.refine_chunk": 1}).eval()
    chunked.load_state_dict(model.state_dict())
    x = _input(model)
    with torch.no_grad():
        out = model.forward_with_aux(x)
        torch.testing.assert_close(chunked(x), out.logits)
    assert out.info["refine_idx"].shape == (2, 2)


def test_sparse_decoder_writes_full_resolution_only_in_refined_cells() -> None:
    model = _model("tokenseg_test").eval()
    x = _input(model)
    with torch.no_grad():
        out = model.forward_with_aux(x)
        for param in model.decoder.head.parameters():
            param.zero_()  # the full-resolution head; the coarse head is untouched
        changed = model(x) != out.logits  # (B, K, *S)
    grid = model.config.encoder.cell_grids[0]
    refined = torch.zeros_like(changed)
    for b, cell in itertools.product(range(2), range(out.info["refine_idx"].shape[1])):
        box = cell_boxes(model.config.roi_size, grid)[out.info["refine_idx"][b, cell]].tolist()
        refined[b, :, box[0]:box[3], box[1]:box[4], box[2]:box[5]] = True
    assert changed.any() and not changed[~refined].any()


@pytest.mark.parametrize(("k", "cells"), [(25, 4), (100, 16), (400, 64)])
def test_refined_cells_grow_with_k(k: int, cells: int) -> None:
    cfg = get_config("tokenseg3d_sparse", **{"selection.num_selected": k})
    assert cfg.num_refine_cells == cells


def test_crop_and_paste_cells_round_trip() -> None:
    x = torch.randn(2, 3, 8, 6, 4)
    grid, idx = (2, 3, 2), torch.tensor([[0, 5], [3, 2]])
    crops = crop_cells(x, grid, idx, halo=0)  # (4, 3, 4, 2, 2)
    assert torch.equal(crops[1], x[0, :, 0:4, 4:6, 2:4])  # cell 5 = (0, 2, 1)
    assert torch.equal(trim(crop_cells(x, grid, idx, halo=1), 1), crops)
    out = paste_cells(torch.zeros_like(x), crops, grid, idx)
    written = torch.zeros_like(x, dtype=torch.bool)
    for b, cell in itertools.product(range(2), range(2)):
        box = cell_boxes((8, 6, 4), grid)[idx[b, cell]].tolist()
        written[b, :, box[0]:box[3], box[1]:box[4], box[2]:box[5]] = True
    assert torch.equal(out[written], x[written]) and (out[~written] == 0).all()


def test_mark_cells_ranks_cells_met_by_tokens() -> None:
    cells = cell_boxes((8, 8), (2, 2))  # four 4x4 cells
    token_boxes = torch.tensor([[[0, 0, 8, 4], [4, 4, 8, 8]]])  # left half; bottom-right cell
    priority = mark_cells(token_boxes, torch.tensor([[0.2, 0.9]]), cells)
    torch.testing.assert_close(priority, torch.tensor([[1.2, 0.0, 1.2, 1.9]]))


def test_boundary_loss_only_with_target_and_weight() -> None:
    model = _model("tokenseg2d_test", **{"selection.boundary_loss_weight": 0.1})
    x = _input(model)
    target = torch.zeros(2, 1, 64, 64, dtype=torch.long)
    target[:, :, 20:40, 10:30] = 1
    out = model.forward_with_aux(x, target)
    assert set(out.losses) == {"vq", "boundary"} and out.losses["boundary"].item() > 0
    assert "boundary" not in model.forward_with_aux(x).losses
    assert "boundary" not in _model("tokenseg2d_test").forward_with_aux(x, target).losses
    fraction = boundary_hit_fraction(out.info["token_box"], target)
    assert fraction.shape == (2,) and fraction.min() >= 0 and fraction.max() <= 1


def test_on_epoch_end_reports_codebook_use_once() -> None:
    model = _model("tokenseg2d_test")
    model.forward_with_aux(_input(model))
    stats = model.on_epoch_end()
    assert set(stats) == {"vq_utilisation", "vq_perplexity"}
    assert 0 < stats["vq_utilisation"] <= 1 and stats["vq_perplexity"] >= 1
    assert model.on_epoch_end() == {}
    assert _model("tokenseg2d_test", **{"vq.enabled": False}).on_epoch_end() == {}


def test_random_selection_is_seeded_in_eval() -> None:
    model = _model("tokenseg2d_test", **{"selection.method": "random"}).eval()
    x = _input(model)
    with torch.no_grad():
        first, second = model.forward_with_aux(x), model.forward_with_aux(x)
    assert torch.equal(first.info["token_idx"], second.info["token_idx"])


def test_input_multiple_and_presets_round_trip() -> None:
    assert get_config("tokenseg3d").roi_size == REFERENCE_PATCH
    assert input_multiple(get_config("tokenseg3d")) == (64, 80, 80)
    assert input_multiple(get_config("tokenseg3d_sparse")) == (64, 80, 80)
    for name in list_models("tokenseg*"):
        cfg = get_config(name)
        assert from_dict(type(cfg), to_dict(cfg)) == cfg
        assert all(s % m == 0 for s, m in zip(cfg.roi_size, input_multiple(cfg), strict=True))


_SPARSE = {"mode": "sparse"}


@pytest.mark.parametrize(("build", "message"), [
    (lambda: EncoderConfig(num_candidates=399), "num_candidates"),
    (lambda: EncoderConfig(cell_grids=((4, 5, 5),) * 3), "one grid per level"),
    (lambda: EncoderConfig(pool="median"), "pool"),
    (lambda: TokenSegConfig(selection=SelectionConfig(num_selected=401)), "num_selected"),
    (lambda: TokenSegConfig(roi_size=(64, 160, 150)), "roi_size"),
    (lambda: TokenSegConfig(spatial_dims=2, roi_size=(160, 160)), "cell_grids"),
    (lambda: DecoderConfig(**_SPARSE, refine_ratio=1.5), "refine_ratio"),
    (lambda: TokenSegConfig(decoder=DecoderConfig(**_SPARSE, refine_levels=4)), "levels"),
    (lambda: DecoderConfig(mode="patchy"), "mode"),
    (lambda: SelectionConfig(method="greedy"), "method"),
    (lambda: SelectionConfig(boundary_weight=-1.0), "weights"),
    (lambda: VQConfig(num_codes=0), "num_codes"),
    (lambda: TokenSegConfig(num_token_layers=1, num_heads=3), "num_heads"),
])
def test_invalid_configs_raise(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.slow
def test_sparse_reference_forward_on_the_reference_patch() -> None:
    """The reference model with the sparse decoder on 1x1x64x160x160 (about 10 s on a CPU)."""
    model = _model("tokenseg3d_sparse").eval()
    with torch.no_grad():
        out = model.forward_with_aux(torch.randn(1, 1, *REFERENCE_PATCH))
    assert out.logits.shape == (1, 2, *REFERENCE_PATCH)
    assert out.info["token_idx"].shape == (1, 100)
    assert torch.isfinite(out.logits).all()


def test_input_size_must_tile_the_cell_grids() -> None:
    model = _model("tokenseg2d_test")
    assert model(torch.randn(1, 1, 96, 64)).shape == (1, 2, 96, 64)  # any multiple of 32
    with pytest.raises(ValueError, match="multiple of"):
        model(torch.randn(1, 1, 48, 64))


def test_forward_under_bfloat16_autocast() -> None:
    model = _model("tokenseg_test")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_with_aux(_input(model))
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.losses["vq"])
