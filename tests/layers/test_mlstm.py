"""mLSTM forms (parallel / recurrent / chunkwise) and the ViL-style mLSTM layer."""

from __future__ import annotations

import math

import pytest
import torch

from medtoken.layers import mlstm as mlstm_module
from medtoken.layers.mlstm import (
    MLSTMLayer,
    mlstm,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
)


def _naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
           f_preact: torch.Tensor) -> torch.Tensor:
    """The unstabilised definition, one token at a time (xLSTM Eq. 19-27, sigmoid forget)."""
    b, nh, n_tok, d = q.shape
    c_mem = q.new_zeros(b, nh, d, v.shape[-1])
    n_vec = q.new_zeros(b, nh, d)
    out = []
    for t in range(n_tok):
        i_gate = torch.exp(i_preact[..., t])[..., None]  # (B, NH, 1)
        f_gate = torch.sigmoid(f_preact[..., t])[..., None]
        k_t = k[..., t, :] / math.sqrt(d)
        c_mem = f_gate[..., None] * c_mem + (i_gate * k_t)[..., :, None] * v[..., t, None, :]
        n_vec = f_gate * n_vec + i_gate * k_t
        numerator = (q[..., t, None, :] @ c_mem).squeeze(-2)
        denominator = (q[..., t, :] * n_vec).sum(-1, keepdim=True)
        out.append(numerator / denominator.abs().clamp(min=1.0))
    return torch.stack(out, dim=-2)


def _inputs(n_tok: int, dtype: torch.dtype = torch.float64, d: int = 16,
            batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Spec T3: q, k, v ~ N(0, 1); i~ ~ N(0, 4); f~ ~ N(3, 4)."""
    gen = torch.Generator().manual_seed(n_tok)
    q, k, v = (torch.randn(batch, 4, n_tok, d, generator=gen, dtype=dtype) for _ in range(3))
    i_preact = 2 * torch.randn(batch, 4, n_tok, generator=gen, dtype=dtype)
    f_preact = 3 + 2 * torch.randn(batch, 4, n_tok, generator=gen, dtype=dtype)
    return q, k, v, i_preact, f_preact


def _all_forms(inputs: tuple[torch.Tensor, ...], eps: float,
               chunk_size: int = 64) -> dict[str, torch.Tensor]:
    return {
        "parallel": mlstm_parallel(*inputs, eps=eps),
        "recurrent": mlstm_recurrent(*inputs, eps=eps)[0],
        "chunkwise": mlstm_chunkwise(*inputs, chunk_size=chunk_size, eps=eps)[0],
    }


@pytest.mark.parametrize("n_tok", [256, 250])  # 250: not a multiple of the chunk
def test_forms_equal_unstabilised_definition_fp64(n_tok: int) -> None:
    inputs = _inputs(n_tok)
    reference = _naive(*inputs)
    for name, h in _all_forms(inputs, eps=0.0).items():
        assert (h - reference).abs().max() <= 1e-9, name


@pytest.mark.parametrize("n_tok", [256, 250])
def test_stabilised_forms_agree_fp64_with_eps(n_tok: int) -> None:
    # all forms share the stabiliser m_t, so eps enters identically (spec asks <= 1e-5)
    outputs = _all_forms(_inputs(n_tok), eps=1e-6)
    for name in ("recurrent", "chunkwise"):
        assert (outputs[name] - outputs["parallel"]).abs().max() <= 1e-9, name


@pytest.mark.parametrize("n_tok", [256, 250])
def test_forms_agree_fp32(n_tok: int) -> None:
    reference = mlstm_parallel(*_inputs(n_tok), eps=1e-6)
    inputs32 = tuple(t.float() for t in _inputs(n_tok))
    for name, h in _all_forms(inputs32, eps=1e-6).items():
        torch.testing.assert_close(h.double(), reference, atol=2e-3, rtol=1e-4, msg=name)


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 100, 300])
def test_chunkwise_independent_of_chunk_size(chunk_size: int) -> None:
    inputs = _inputs(100)
    expected = mlstm_parallel(*inputs, eps=1e-6)
    h = mlstm_chunkwise(*inputs, chunk_size=chunk_size, eps=1e-6)[0]
    assert (h - expected).abs().max() <= 1e-9


def test_streaming_with_state_equals_whole_sequence() -> None:
    q, k, v, i_preact, f_preact = _inputs(90)
    whole, final = mlstm_chunkwise(q, k, v, i_preact, f_preact, chunk_size=16)
    first = slice(0, 37)
    second = slice(37, 90)
    h1, state = mlstm_chunkwise(q[..., first, :], k[..., first, :], v[..., first, :],
                                i_preact[..., first], f_preact[..., first], chunk_size=16)
    h2, state = mlstm_recurrent(q[..., second, :], k[..., second, :], v[..., second, :],
                                i_preact[..., second], f_preact[..., second], state=state)
    torch.testing.assert_close(torch.cat([h1, h2], dim=-2), whole, atol=1e-10, rtol=0)
    for got, expected in zip(state, final, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    # one more token through mlstm_step continues the sequence
    h_next, _ = mlstm_step(q[..., 0, :], k[..., 0, :], v[..., 0, :], i_preact[..., 0],
                           f_preact[..., 0], final)
    assert h_next.shape == (2, 4, 16)


def test_against_xlstm_oracle() -> None:
    backends = pytest.importorskip("xlstm.blocks.mlstm.backends")
    q, k, v, i_preact, f_preact = _inputs(256)
    expected = backends.parallel_stabilized_simple(q, k, v, i_preact[..., None],
                                                   f_preact[..., None])
    for name, h in _all_forms((q, k, v, i_preact, f_preact), eps=1e-6).items():
        assert (h - expected).abs().max() <= 1e-5, name


@pytest.mark.parametrize("mode", ["parallel", "chunkwise", "recurrent"])
@pytest.mark.parametrize("i_value", [-50.0, 50.0])
@pytest.mark.parametrize("f_value", [-50.0, 50.0])
def test_extreme_gates_stay_finite_fp32(mode: str, i_value: float, f_value: float) -> None:
    q, k, v = (torch.randn(1, 2, 40, 8, requires_grad=True) for _ in range(3))
    i_preact = torch.full((1, 2, 40), i_value, requires_grad=True)
    f_preact = torch.full((1, 2, 40), f_value, requires_grad=True)
    h = mlstm(q, k, v, i_preact, f_preact, mode=mode, chunk_size=16)
    h.square().sum().backward()
    assert torch.isfinite(h).all()
    for tensor in (q, k, v, i_preact, f_preact):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()


def test_running_max_export_form_equals_cummax(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(3, 2, 37, dtype=torch.float64, requires_grad=True)  # no ties
    weights = torch.randn(3, 2, 37, dtype=torch.float64)
    eager = mlstm_module._running_max(x)
    (grad_eager,) = torch.autograd.grad((eager * weights).sum(), x)
    monkeypatch.setattr(mlstm_module, "exporting", lambda: True)
    exported = mlstm_module._running_max(x)
    (grad_exported,) = torch.autograd.grad((exported * weights).sum(), x)
    assert torch.equal(exported, eager)
    torch.testing.assert_close(grad_exported, grad_eager, rtol=0, atol=1e-12)
    assert torch.equal(eager, x.cummax(-1).values)


def test_weights_under_the_floor_are_zero_and_masked_entries_stay_finite() -> None:
    log_w = torch.tensor([0.0, -1.0, -63.0, -65.0, -200.0, float("-inf"), 500.0],
                         requires_grad=True)
    keep = torch.tensor([True, True, True, True, True, True, False])
    weights = mlstm_module._exp_weights(log_w, keep)
    expected = torch.tensor([1.0, math.exp(-1.0), math.exp(-63.0), 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(weights, expected, rtol=1e-6, atol=0)
    (grad,) = torch.autograd.grad(weights.sum(), log_w)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[3:], torch.zeros(4))
    with torch.no_grad():  # the in-place path inference takes
        assert torch.equal(mlstm_module._exp_weights(log_w.detach().clone(), keep), weights)


def test_strongly_forgetting_gates_chunkwise_equals_parallel_fp64() -> None:
    # trained gates decay far past exp(-64) inside a chunk; dropping those weights is invisible
    q, k, v, i_preact, _ = _inputs(200)
    f_preact = -4 + torch.randn(2, 4, 200, dtype=torch.float64)
    expected = mlstm_parallel(q, k, v, i_preact, f_preact, eps=1e-6)
    h = mlstm_chunkwise(q, k, v, i_preact, f_preact, chunk_size=64, eps=1e-6)[0]
    assert (h - expected).abs().max() <= 1e-9


def test_mlstm_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        mlstm(*_inputs(4), mode="quadratic")
    with pytest.raises(ValueError, match="mode"):
        MLSTMLayer(8, mode="quadratic")
    with pytest.raises(ValueError, match="chunk_size"):
        mlstm_chunkwise(*_inputs(4), chunk_size=0)


# --------------------------------------------------------------------------------------------
# the layer


@pytest.mark.parametrize("dim", [8, 32, 64])
def test_layer_parameter_count(dim: int) -> None:
    layer = MLSTMLayer(dim)
    assert sum(p.numel() for p in layer.parameters()) == 3 * dim**2 + 44 * dim + 8


@pytest.mark.parametrize("mode", ["parallel", "chunkwise", "recurrent"])
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_is_causal_in_its_direction(mode: str, reverse: bool) -> None:
    layer = MLSTMLayer(16, mode=mode, chunk_size=8, reverse=reverse).double()
    x = torch.randn(2, 20, 16, dtype=torch.float64, requires_grad=True)
    t = 9
    layer(x)[:, t].sum().backward()
    assert x.grad is not None
    influence = x.grad.abs().sum(dim=(0, 2))  # (N,)
    future = influence[t + 1:] if not reverse else influence[:t]
    past = influence[:t + 1] if not reverse else influence[t:]
    assert (future == 0).all()
    assert (past > 0).all()


def test_reverse_layer_is_flipped_forward_layer() -> None:
    forward = MLSTMLayer(16, chunk_size=8)
    backward = MLSTMLayer(16, chunk_size=8, reverse=True)
    backward.load_state_dict(forward.state_dict())
    x = torch.randn(2, 21, 16)
    torch.testing.assert_close(backward(x), forward(x.flip(1)).flip(1))


def test_layer_modes_agree() -> None:
    layer = MLSTMLayer(16, chunk_size=8).double()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    outputs = []
    for mode in ("parallel", "chunkwise", "recurrent"):
        layer.mode = mode
        outputs.append(layer(x))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(outputs[2], outputs[0], atol=1e-10, rtol=0)
