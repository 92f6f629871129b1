"""SCD family: the STP/MTA spec's acceptance tests (§9 items 1–9), the dense twin, 2D, ablations.

Full-size models (ViT-B at 96³ / 128³) are built and run on the ``meta`` device: shapes, token
counts, parameter counts and MACs come out in about a second each, without allocating memory.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import medtoken.tokens.pruning as pruning_module
from medtoken import create_model
from medtoken.models.scd import SCD
from medtoken.registry import get_config
from medtoken.tokens.indexing import scatter_tokens

TINY = ["scd_test", "scd2d_test"]
P16 = {"encoder.patch_size": 16, "pruning.keep_ratio": 0.25, "completion.embed_dim": 384,
       "completion.depth": 3, "completion.num_heads": 8}  # the upstream config-file defaults


def _input(model: SCD, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.in_channels, *model.config.roi_size)


def _meta_model(name: str, **overrides: Any) -> tuple[SCD, torch.Tensor]:
    with torch.device("meta"):
        model = create_model(name, **overrides).eval()
        return model, torch.empty(1, model.in_channels, *model.config.roi_size)


def _score_grads(model: SCD) -> list[torch.Tensor | None]:
    return [p.grad for pruner in model.encoder.pruners for p in pruner.score_net.parameters()]


# --------------------------------------------------------------------------------------------
# §9.1 token accounting, §9.2 partition, §9.3 re-assembly


@pytest.mark.parametrize(("name", "overrides", "kept", "pruned", "final"), [
    ("scd_btcv", {}, [172, 17, 1], [1556, 155, 16], 2),
    ("scd_brats", {}, [1024, 256, 64], [3072, 768, 192], 65),
    ("scd_btcv", P16, [54, 13, 3], [162, 41, 10], 4),
])
def test_token_accounting_full_size(name: str, overrides: dict, kept: list[int],
                                    pruned: list[int], final: int) -> None:
    model, x = _meta_model(name, **overrides)
    enc = model.encoder(x)
    num_patches = math.prod(model.config.grid_size)
    assert [p.shape[1] for p in enc.pruned] == pruned
    assert [k.shape[1] for k in enc.kept_pos_idx] == kept
    assert enc.tokens.shape[1] == final  # final kept set + CLS
    assert sum(pruned) + final == num_patches + 1
    assert model.config.token_counts() == (num_patches, *kept)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("training", [True, False])
def test_sets_partition_all_positions_in_raster_order(name: str, training: bool) -> None:
    model = create_model(name).train(training)
    enc = model.encoder(_input(model))
    num_patches = math.prod(model.config.grid_size)
    everything = torch.cat([*enc.pruned_pos_idx, enc.pos_idx], dim=1).sort(dim=1).values
    assert torch.equal(everything, torch.arange(num_patches).expand(2, -1))
    for idx in [*enc.pruned_pos_idx, *enc.kept_pos_idx]:
        assert torch.all(idx.diff(dim=1) > 0)
    assert enc.tokens.shape[1] == 1 + enc.pos_idx.shape[1]  # CLS leads the final set
    for outer, inner in zip(enc.kept_pos_idx, enc.kept_pos_idx[1:], strict=False):
        assert torch.isin(inner, outer).all()  # kept sets nest


class _IndexEmbed(nn.Module):
    """Patch-embedding stand-in: channel 0 of token i holds i, the others fixed noise."""

    def __init__(self, grid: tuple[int, ...], dim: int) -> None:
        super().__init__()
        table = torch.randn(dim, *grid)
        table[0] = torch.arange(math.prod(grid), dtype=torch.float32).reshape(grid)
        self.register_buffer("table", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table.expand(x.shape[0], *self.table.shape)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("training", [True, False])
def test_reassembly_puts_every_token_back_at_its_own_index(name: str, training: bool) -> None:
    """§9.3: identity encoder (tokens carry their index, blocks and norms are identities), random
    score nets; after the scatter MTA uses, position i holds value i."""
    model = create_model(name).train(training)
    enc = model.encoder
    enc.patch_embed = _IndexEmbed(enc.grid_size, enc.pos_embed.shape[-1])
    with torch.no_grad():
        enc.pos_embed.zero_()
    enc.blocks = nn.ModuleList(nn.Identity() for _ in enc.blocks)
    enc.norm = nn.Identity()
    out = enc(_input(model))
    sets = [*out.pruned, out.tokens[:, 1:]]
    positions = [*out.pruned_pos_idx, out.pos_idx]
    for tokens, pos in zip(sets, positions, strict=True):
        torch.testing.assert_close(tokens[..., 0], pos.float())  # each token moved with its index
    base = torch.full((2, enc.num_patches, sets[0].shape[-1]), -1.0)
    dense = scatter_tokens(base, sets, positions)  # what TokenAssembly does before PE and blocks
    torch.testing.assert_close(dense[..., 0], torch.arange(enc.num_patches).float().expand(2, -1))


# --------------------------------------------------------------------------------------------
# §9.4 straight-through multipliers, §9.5 gradient flow, §9.6 stochasticity


@pytest.mark.parametrize("name", TINY)
def test_straight_through_multipliers_do_not_change_the_forward(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model(name).train()
    x = _input(model)
    torch.manual_seed(5)
    with_multipliers = model(x)
    original = pruning_module.straight_through_topk
    monkeypatch.setattr(pruning_module, "straight_through_topk",
                        lambda *a, **k: original(*a, **k)._replace(mask=None))
    torch.manual_seed(5)  # same Gumbel draws, hence the same hard selection
    without = model(x)
    torch.testing.assert_close(with_multipliers, without, rtol=0, atol=0)
    without.sum().backward()
    assert all(g is None for g in _score_grads(model))  # the multipliers are the only path


@pytest.mark.parametrize("name", TINY)
def test_every_score_net_gets_gradients_in_training_and_none_in_eval(name: str) -> None:
    model = create_model(name).train()
    x = _input(model)
    weights = torch.randn(2, model.num_classes, *model.config.roi_size)
    (model(x) * weights).sum().backward()
    for pruner in model.encoder.pruners:
        grads = [p.grad for p in pruner.score_net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads if g is not None) > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    (model(x) * weights).sum().backward()
    assert all(g is None for g in _score_grads(model))


@pytest.mark.parametrize("name", TINY)
def test_training_selections_vary_and_eval_selections_do_not(name: str) -> None:
    model = create_model(name)
    x = _input(model)
    model.train()
    picks = {tuple(model.forward_with_aux(x).info["kept_token_idx"][0][0].tolist())
             for _ in range(4)}
    assert len(picks) > 1
    model.eval()
    with torch.inference_mode():
        a, b = model.forward_with_aux(x).info, model.forward_with_aux(x).info
    for ka, kb in zip(a["kept_token_idx"], b["kept_token_idx"], strict=True):
        assert torch.equal(ka, kb)


# --------------------------------------------------------------------------------------------
# §9.8 shapes, §9.9 compute


@pytest.mark.parametrize(("name", "classes", "size"), [
    ("scd_btcv", 14, 96), ("unetr_btcv", 14, 96), ("scd_brats", 3, 128)])
def test_full_size_logits_shapes(name: str, classes: int, size: int) -> None:
    model, x = _meta_model(name)
    assert model(x).shape == (1, classes, size, size, size)


def test_btcv_mta_output_and_x8v2_decoder_maps() -> None:
    model, x = _meta_model("scd_btcv")
    shapes: dict[str, tuple[int, ...]] = {}
    dec = model.decoder
    named = {"enc1": dec.encoder1, "enc2": dec.skips[0], "enc3": dec.skips[1],
             "enc4": dec.skips[2], "bottleneck": dec.bottleneck}
    for key, module in named.items():
        module.register_forward_hook(
            lambda _m, _i, out, key=key: shapes.__setitem__(key, tuple(out.shape)))
    enc = model.encoder(x)
    assert model.completion is not None
    dense = model.completion([*enc.pruned, enc.tokens], [*enc.pruned_pos_idx, enc.pos_idx])
    assert dense.shape == (1, 12**3, 768)
    model(x)
    assert shapes == {"enc1": (1, 16, 96, 96, 96), "enc2": (1, 32, 48, 48, 48),
                      "enc3": (1, 64, 24, 24, 24), "enc4": (1, 128, 12, 12, 12),
                      "bottleneck": (1, 768, 6, 6, 6)}


def _torchprofile_macs(model: nn.Module, x: torch.Tensor) -> float:
    """GMACs under torchprofile 0.0.4's conventions (the counter behind the spec's numbers).

    Counter: ``torch.utils.flop_counter.FlopCounterMode``; unit: its total FLOPs / 2 = MACs.
    Matmuls, linears and convolutions count as in torchprofile, which differs in:
    - transposed convolutions: torchprofile counts ``numel(out) · C_in · prod(kernel)``, i.e.
      ``prod(kernel)`` (= 8 in 3D) times the true MACs of a stride = kernel up-sampling;
    - LayerNorm: ``numel(out)``;
    - attention: upstream computes ``(q @ kᵀ) * scale`` explicitly and torchprofile counts that
      multiply as ``B·h·N²``; SDPA hides it, so the softmax over the scores is counted instead
      (same size; on ``meta`` SDPA runs its math decomposition);
    - avg-pool and mean: ``numel(out)``;
    - instance norms and in-place LeakyReLUs count 0, as in torchprofile (whose table has no
      ``leaky_relu_`` and sees MONAI's instance norm as ``batch_norm`` = 0); GELU, softmax (other
      than above) and additions count 0 in both.
    """
    aten = torch.ops.aten

    def conv(x_shape: Any, w_shape: Any, _b: Any, _s: Any, _p: Any, _d: Any, transposed: bool,
             *_: Any, out_shape: Any = None, **__: Any) -> int:
        c_in = w_shape[0] if transposed else w_shape[1]
        return 2 * math.prod(out_shape) * c_in * math.prod(w_shape[2:])

    def numel_out(*_: Any, out_shape: Any = None, **__: Any) -> int:
        first = out_shape[0] if isinstance(out_shape[0], (tuple, list, torch.Size)) else out_shape
        return 2 * math.prod(first)

    mapping = {aten.convolution: conv, aten.native_layer_norm: numel_out,
               aten._safe_softmax: numel_out, aten.avg_pool3d: numel_out,
               aten.avg_pool2d: numel_out, aten.mean: numel_out}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(x)
    return counter.get_total_flops() / 2e9


@pytest.mark.parametrize(("name", "overrides", "gmacs", "mparams", "true_gmacs"), [
    ("scd_btcv", {}, 146.627, 106.25, 131.800),
    ("unetr_btcv", {}, 273.451, 93.31, 258.322),
])
def test_btcv_parameters_and_macs_match_the_spec(name: str, overrides: dict, gmacs: float,
                                                 mparams: float, true_gmacs: float) -> None:
    """§7.2/§9.9: torchprofile numbers of the released code (README: "146.627 G")."""
    model, x = _meta_model(name, **overrides)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - mparams) < 0.1
    assert _torchprofile_macs(model, x) == pytest.approx(gmacs, rel=1e-3)
    # plain FlopCounterMode (no torchprofile conventions): the true multiply-adds
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() / 2e9 == pytest.approx(true_gmacs, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides", "gmacs", "mparams"), [
    ("scd_btcv", {"decoder.num_upsamples": 3}, 141.927, 101.23),  # upstream x8 decoder
    ("scd_brats", {}, 439.421, 109.25),
    ("unetr_brats", {}, 835.520, 96.31),
    ("scd_brats", {"decoder.num_upsamples": 3}, 428.281, 104.23),
    ("unetr_brats", {"decoder.num_upsamples": 3, "decoder.skip_blocks": (4, 8)}, 824.379, 91.30),
    ("scd_btcv", P16, 72.180, 102.51),
    ("scd_btcv", {**P16, "completion.mode": "mask"}, 72.117, 101.62),
    ("unetr_btcv", {"encoder.patch_size": 16}, 83.435, 92.81),
    ("scd_brats", P16, 179.400, 112.17),
    ("unetr_brats", {"encoder.patch_size": 16}, 207.753, 102.48),
])
def test_every_compute_row_of_the_spec(name: str, overrides: dict, gmacs: float,
                                       mparams: float) -> None:
    model, x = _meta_model(name, **overrides)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - mparams) < 0.01
    assert _torchprofile_macs(model, x) == pytest.approx(gmacs, rel=1e-4)


def test_component_parameter_counts() -> None:
    model, _ = _meta_model("scd_btcv")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert [count(p.score_net) for p in model.encoder.pruners] == [961_537] * 3
    # upstream encoder 89.67 M includes the 3 mid-LNs (3 x 1536), which live in the MTA here
    assert count(model.encoder) + 3 * 1536 == 89_667_843
    assert count(model.decoder) / 1e6 == pytest.approx(6.53, abs=0.01)


# --------------------------------------------------------------------------------------------
# dense twin, keep ratio 1, ablations, 2D


def _load_into_unpruned(dense: SCD, pruned: SCD) -> None:
    """Copy weights; the final set is MTA source ``S`` in ``pruned`` and source 0 in ``dense``."""
    state = pruned.state_dict()
    last = len(pruned.config.pruning.prune_after)
    mapped = {k: v for k, v in state.items()
              if k in dense.state_dict() and not k.startswith("completion.projs.")}
    mapped.update({k.replace(f"projs.{last}.", "projs.0."): v for k, v in state.items()
                   if k.startswith(f"completion.projs.{last}.")})
    mapped["completion.layer_embed"] = state["completion.layer_embed"][last:]
    dense.load_state_dict(mapped)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("training", [True, False])
def test_keep_ratio_one_equals_the_unpruned_model(name: str, training: bool) -> None:
    pruned = create_model(name, **{"pruning.keep_ratio": 1.0})
    with torch.no_grad():
        pruned.completion.layer_embed.normal_()  # type: ignore[union-attr]
    dense = create_model(name, **{"pruning.prune_after": ()})
    _load_into_unpruned(dense, pruned)
    x = _input(pruned)
    out = pruned.train(training).forward_with_aux(x)
    assert out.info["tokens_per_stage"] == (64, 64, 64, 64)
    torch.testing.assert_close(out.logits, dense.train(training)(x), rtol=1e-5, atol=1e-6)


def test_dense_twin_is_the_same_family_without_pruning() -> None:
    scd, dense = get_config("scd_btcv"), get_config("unetr_btcv")
    assert type(scd) is type(dense)
    assert (scd.encoder, scd.decoder, scd.roi_size) == (dense.encoder, dense.decoder,
                                                         dense.roi_size)
    assert dense.pruning.prune_after == () and dense.completion.mode == "none"
    model = create_model("scd_test", **{"pruning.prune_after": (), "completion.mode": "none"})
    assert model.completion is None and len(model.encoder.pruners) == 0
    out = model.forward_with_aux(_input(model))
    out.logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert out.info["tokens_per_stage"] == (64,) and out.info["kept_token_idx"] == []


@pytest.mark.parametrize("name", TINY)
def test_mask_token_completion_ablation_ignores_pruned_tokens(name: str) -> None:
    model = create_model(name, **{"completion.mode": "mask"})
    assert not model.needs_unused_parameter_search
    model.train()
    model(_input(model)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_selection_ablations() -> None:
    topk = create_model("scd_test", **{"pruning.method": "topk"}).train()
    x = _input(topk)
    a, b = topk.forward_with_aux(x).info, topk.forward_with_aux(x).info
    assert all(torch.equal(i, j) for i, j in zip(a["kept_token_idx"], b["kept_token_idx"],
                                                 strict=True))
    random = create_model("scd_test", **{"pruning.method": "random"})
    assert random.needs_unused_parameter_search
    random(x).sum().backward()
    assert all(g is None for g in _score_grads(random))
    assert not create_model("scd_test").needs_unused_parameter_search
    assert not create_model("unetr_hippo").needs_unused_parameter_search


def test_pruning_selection_is_an_old_name_of_pruning_method(deprecations) -> None:
    old = get_config("scd_test", **{"pruning.selection": "topk"})
    assert old == get_config("scd_test", **{"pruning.method": "topk"})
    assert deprecations() == ["'pruning.selection' is deprecated; use 'pruning.method' (the old "
                              "spelling will be removed in a future release)"]


@pytest.mark.parametrize("name", TINY)
def test_contract_properties_and_info(name: str) -> None:
    model = create_model(name)
    cfg = model.config
    assert model.fixed_input_size == cfg.roi_size
    assert all(s % m == 0 for s, m in zip(cfg.roi_size, model.input_multiple, strict=True))
    out = model.eval().forward_with_aux(_input(model))
    assert out.losses == {}
    assert out.info["token_grid"] == cfg.grid_size
    assert out.info["tokens_per_stage"] == (64, 32, 16, 8)
    assert [k.shape for k in out.info["kept_token_idx"]] == [(2, 32), (2, 16), (2, 8)]
    assert [p.shape for p in out.info["pruned_token_idx"]] == [(2, 32), (2, 16), (2, 8)]


@pytest.mark.parametrize("name", TINY)
def test_without_cls_token(name: str) -> None:
    model = create_model(name, **{"encoder.use_cls_token": False}).train()
    enc = model.encoder(_input(model))
    assert enc.tokens.shape[1] == enc.pos_idx.shape[1] == 8  # no prefix token
    model(_input(model)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_presets_build_with_dotted_overrides() -> None:
    cfg = get_config("scd_btcv", **{"pruning.keep_ratio": 0.3})
    assert cfg.pruning.keep_ratio == 0.3 and cfg.token_counts() == (1728, 518, 155, 46)
    for name in ["scd_hippo", "unetr_hippo", "scd_busi", "unetr_busi"]:
        assert get_config(name).roi_size == _meta_model(name)[0].fixed_input_size


@pytest.mark.parametrize(("overrides", "match"), [
    ({"encoder.patch_size": 12}, "patch_size"),
    ({"roi_size": (18, 16, 16)}, "divisible by encoder.patch_size"),
    ({"roi_size": (20, 16, 16)}, r"2\^num_upsamples"),
    ({"decoder.num_upsamples": 1}, "num_upsamples"),
    ({"pruning.keep_ratio": 0.0}, "keep_ratio"),
    ({"pruning.keep_ratio": 0.01}, "leaves no token"),
    ({"pruning.prune_after": (2, 1)}, "strictly increasing"),
    ({"pruning.prune_after": (4,)}, "below encoder.depth"),
    ({"pruning.method": "soft"}, "pruning.method"),
    ({"pruning.temperature": 0.0}, "temperature"),
    ({"completion.mode": "none"}, "needs a completion"),
    ({"completion.embed_dim": 26, "completion.num_heads": 2}, "divisible by 6"),
    ({"encoder.embed_dim": 30}, "divisible by"),
    ({"pruning.prune_after": (), "completion.mode": "none",
      "decoder.skip_blocks": (1,)}, "num_upsamples - 1"),
])
def test_invalid_configs_raise(overrides: dict, match: str) -> None:
    with pytest.raises(Exception, match=match):
        get_config("scd_test", **overrides)
