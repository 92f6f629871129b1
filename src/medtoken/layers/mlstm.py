"""The mLSTM recurrence (xLSTM's matrix-memory cell) in three equivalent forms.

mLSTM: Beck et al., "xLSTM: Extended Long Short-Term Memory", arXiv:2405.04517. Per head, with
an exponential input gate, a sigmoid forget gate (kept in log space) and ``k`` scaled by 1/sqrt(d):

    C_t = f_t C_{t-1} + i_t k_t v_t^T,   n_t = f_t n_{t-1} + i_t k_t,
    h_t = q_t^T C_t / max(|q_t . n_t|, 1).

All three forms carry the same max stabiliser ``m_t = max_{s<=t} (log f_{s+1..t} + i~_s)`` (the
parallel form's row maximum; the recurrent form starts from ``m_0 = -inf``), so with ``eps > 0``
they agree to rounding, not only up to where ``eps`` enters:

- :func:`mlstm_parallel`: quadratic in N, what the TM-UNet release runs;
- :func:`mlstm_recurrent` / :func:`mlstm_step`: constant memory per step, for streaming;
- :func:`mlstm_chunkwise`: linear in N; parallel inside chunks of ``chunk_size`` tokens, a loop
  over chunks carries the ``(C, n, m)`` state.

Tensor layout: ``q, k`` ``(B, NH, N, d)``, ``v`` ``(B, NH, N, dv)``, gate pre-activations
``(B, NH, N)``. Pure PyTorch; runs on CPU. :class:`MLSTMLayer` wraps the cell as the ViL layer
(Alkin et al., "Vision-LSTM", arXiv:2406.04303) that TM-UNet uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from medtoken.utils.compile import exporting

__all__ = [
    "MLSTM_MODES",
    "BlockDiagonalLinear",
    "MLSTMLayer",
    "MLSTMState",
    "mlstm",
    "mlstm_chunkwise",
    "mlstm_initial_state",
    "mlstm_parallel",
    "mlstm_recurrent",
    "mlstm_step",
]

MLSTM_MODES = ("parallel", "chunkwise", "recurrent")


class MLSTMState(NamedTuple):
    """Recurrent state of one mLSTM sequence, stored divided by ``exp(m)``.

    Attributes:
        C: matrix memory ``(B, NH, d, dv)`` (keys by values).
        n: normaliser ``(B, NH, d)``.
        m: log-space stabiliser ``(B, NH)``; ``-inf`` before the first token.
    """

    C: torch.Tensor
    n: torch.Tensor
    m: torch.Tensor


def mlstm_initial_state(q: torch.Tensor, v: torch.Tensor) -> MLSTMState:
    """The empty state for queries ``q`` ``(B, NH, ..., d)`` and values ``(B, NH, ..., dv)``."""
    b, nh, d, dv = q.shape[0], q.shape[1], q.shape[-1], v.shape[-1]
    return MLSTMState(
        C=q.new_zeros(b, nh, d, dv),
        n=q.new_zeros(b, nh, d),
        m=q.new_full((b, nh), float("-inf")),
    )


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
                   f_preact: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Stabilised parallel form: O(N^2) time and memory per head.

    Returns:
        ``h`` ``(B, NH, N, dv)``.
    """
    n_tok, d = q.shape[-2], q.shape[-1]
    cum_log_f = F.logsigmoid(f_preact).cumsum(-1)  # (B, NH, N)  F_t
    # log D_ts = F_t - F_s + i~_s for s <= t
    log_d = cum_log_f[..., :, None] - cum_log_f[..., None, :] + i_preact[..., None, :]  # (B,NH,N,N)
    causal = torch.ones(n_tok, n_tok, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal, float("-inf"))
    m = log_d.amax(-1, keepdim=True)  # (B, NH, N, 1)  row-wise stabiliser
    scores = (q @ k.transpose(-1, -2)) * (torch.exp(log_d - m) / math.sqrt(d))  # (B, NH, N, N)
    normaliser = torch.maximum(scores.sum(-1, keepdim=True).abs(), torch.exp(-m))  # (B, NH, N, 1)
    return (scores @ v) / (normaliser + eps)


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
               f_preact: torch.Tensor, state: MLSTMState,
               eps: float = 1e-6) -> tuple[torch.Tensor, MLSTMState]:
    """One recurrent step for ``q, k`` ``(B, NH, d)``, ``v`` ``(B, NH, dv)``, gates ``(B, NH)``.

    Returns:
        ``h`` ``(B, NH, dv)`` and the state after this token.
    """
    log_f = F.logsigmoid(f_preact)
    m = torch.maximum(log_f + state.m, i_preact)  # (B, NH)
    f_gate = torch.exp(log_f + state.m - m)[..., None]  # (B, NH, 1); 0 on the first token
    i_gate = torch.exp(i_preact - m)[..., None]
    k = k / math.sqrt(q.shape[-1])
    c_mem = f_gate[..., None] * state.C + (i_gate * k)[..., :, None] * v[..., None, :]
    # c_mem: (B, NH, d, dv)
    n_vec = f_gate * state.n + i_gate * k  # (B, NH, d)
    numerator = (q[..., None, :] @ c_mem).squeeze(-2)  # (B, NH, dv)
    denominator = (q * n_vec).sum(-1, keepdim=True)  # (B, NH, 1)
    normaliser = torch.maximum(denominator.abs(), torch.exp(-m)[..., None])
    return numerator / (normaliser + eps), MLSTMState(c_mem, n_vec, m)


def mlstm_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
                    f_preact: torch.Tensor, eps: float = 1e-6,
                    state: MLSTMState | None = None) -> tuple[torch.Tensor, MLSTMState]:
    """Recurrent form: a loop of :func:`mlstm_step` over the N tokens.

    Returns:
        ``h`` ``(B, NH, N, dv)`` and the state after the last token.
    """
    state = mlstm_initial_state(q, v) if state is None else state
    outputs = []
    steps = zip(q.unbind(-2), k.unbind(-2), v.unbind(-2), i_preact.unbind(-1),
                f_preact.unbind(-1), strict=True)
    for q_t, k_t, v_t, i_t, f_t in steps:
        h_t, state = mlstm_step(q_t, k_t, v_t, i_t, f_t, state, eps)
        outputs.append(h_t)
    return torch.stack(outputs, dim=-2), state  # (B, NH, N, dv)


def _running_max(x: torch.Tensor) -> torch.Tensor:
    """The running maximum along the last axis: ``cummax``, or, for export (ONNX has no
    ``aten::cummax``), log2(n) shifted maxima: the same values; on exact ties ``cummax`` sends
    the gradient to one of the tied entries, the shifted maxima split it."""
    if not exporting():
        return x.cummax(-1).values
    shift = 1
    while shift < x.shape[-1]:
        x = torch.cat([x[..., :shift], torch.maximum(x[..., shift:], x[..., :-shift])], dim=-1)
        shift *= 2
    return x


LOG_WEIGHT_FLOOR = -64.0  # exp(-64) = 1.6e-28: weights under it count as 0


def _exp_weights(log_w: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``exp`` of stabilised log weights (at most 0 where kept), 0 under ``exp(-64)`` and where
    ``keep`` is False.

    Without the floor, strongly forgetting gates (a trained model's, see docs/benchmarks.md)
    decay to subnormal weights, and on the CPU ``exp`` of such arguments and every product
    with a subnormal number are 10-50x slower per element; a weight under 1.6e-28 is below
    rounding against the row's largest weight, which is 1 (the stabiliser). The arguments are
    clamped into ``[-64, 64]`` first, so the masked entries stay finite (no NaN gradients).
    Without autograd the work is done in place in ``log_w`` (a temporary of the caller's).
    """
    use = log_w > LOG_WEIGHT_FLOOR
    if keep is not None:
        use &= keep
    if torch.is_grad_enabled() and log_w.requires_grad:
        return torch.where(use, log_w.clamp(LOG_WEIGHT_FLOOR, -LOG_WEIGHT_FLOOR).exp(), 0.0)
    return log_w.clamp_(LOG_WEIGHT_FLOOR, -LOG_WEIGHT_FLOOR).exp_().masked_fill_(
        use.logical_not_(), 0.0)


def _chunk_states(d_c: torch.Tensor, d_m: torch.Tensor, decay: torch.Tensor, c_mem: torch.Tensor,
                  m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The state entering each chunk, and after the last one.

    Args:
        d_c: what each chunk adds to the memory, divided by ``exp(d_m)``,
            ``(B, NH, NC, d, dv + 1)`` (the normaliser is the last column).
        d_m: ``(B, NH, NC)``.
        decay: total log forget gate of each chunk ``(B, NH, NC)``.
        c_mem, m: the incoming state ``(B, NH, d, dv + 1)`` and ``(B, NH)``.

    Returns:
        Entry memories ``(B, NH, NC, d, dv + 1)`` and stabilisers ``(B, NH, NC)``, the final
        memory and stabiliser.
    """
    # m after chunk c: max(G_c + m_in, max_{c' <= c} (d_m_c' + G_c - G_c')), G = cumsum(decay)
    cum_decay = decay.cumsum(-1)  # (B, NH, NC)
    m_after = cum_decay + torch.maximum(m[..., None], _running_max(d_m - cum_decay))
    m_entry = torch.cat([m[..., None], m_after[..., :-1]], dim=-1)  # (B, NH, NC)
    keep = _exp_weights(decay + m_entry - m_after)[..., None, None]  # 0 for an empty state
    added = _exp_weights(d_m - m_after)[..., None, None] * d_c  # (B, NH, NC, d, dv + 1)
    entries = []
    # the only sequential part: one fused op per chunk (unbind, not indexing: linear backward)
    for added_c, keep_c in zip(added.unbind(2), keep.unbind(2), strict=True):
        entries.append(c_mem)
        c_mem = torch.addcmul(added_c, keep_c, c_mem)
    return torch.stack(entries, dim=2), m_entry, c_mem, m_after[..., -1]


def _chunkwise_aligned(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
                       f_preact: torch.Tensor, chunk: int, eps: float,
                       state: MLSTMState) -> tuple[torch.Tensor, MLSTMState]:
    """Chunkwise form for N a multiple of ``chunk``; see :func:`mlstm_chunkwise`."""
    b, nh, n_tok, d = q.shape
    nc = n_tok // chunk
    qc = q.reshape(b, nh, nc, chunk, d)  # (B, NH, NC, L, d)
    kc = k.reshape(b, nh, nc, chunk, d) / math.sqrt(d)
    # values with a column of ones: one matmul gives numerator and normaliser together
    vc = F.pad(v, (0, 1), value=1.0).reshape(b, nh, nc, chunk, -1)  # (B, NH, NC, L, dv + 1)
    cum_log_f = F.logsigmoid(f_preact).reshape(b, nh, nc, chunk).cumsum(-1)  # (B,NH,NC,L) a_j
    source = i_preact.reshape(b, nh, nc, chunk) - cum_log_f  # (B, NH, NC, L)  i~_s - a_s

    # chunk contributions to the state: weights a_L - a_s + i~_s, stabilised per chunk
    source_max = source.amax(-1, keepdim=True)  # (B, NH, NC, 1)
    weighted_k = kc * _exp_weights(source - source_max)[..., None]  # (B, NH, NC, L, d)
    entry_c, entry_m, final_c, final_m = _chunk_states(
        weighted_k.transpose(-1, -2) @ vc, (cum_log_f[..., -1:] + source_max)[..., 0],
        cum_log_f[..., -1], torch.cat([state.C, state.n[..., None]], dim=-1), state.m)

    # per-token stabiliser = the parallel form's row maximum over all s <= t
    log_inter = cum_log_f + entry_m[..., None]  # (B, NH, NC, L)  weight of the entry state
    m = torch.maximum(cum_log_f + _running_max(source), log_inter)  # (B, NH, NC, L)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    log_d = (cum_log_f - m)[..., :, None] + source[..., None, :]  # (B, NH, NC, L, L)
    gate = _exp_weights(log_d, causal)
    scores = qc @ kc.transpose(-1, -2)  # (B, NH, NC, L, L)
    scores = scores.mul_(gate) if not torch.is_grad_enabled() else scores * gate
    out = scores @ vc + _exp_weights(log_inter - m)[..., None] * (qc @ entry_c)  # (.., L, dv+1)
    normaliser = torch.maximum(out[..., -1:].abs(), torch.exp(-m)[..., None])
    h = out[..., :-1] / (normaliser + eps)  # (B, NH, NC, L, dv)
    return h.reshape(b, nh, n_tok, -1), MLSTMState(final_c[..., :-1], final_c[..., -1], final_m)


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
                    f_preact: torch.Tensor, chunk_size: int = 64, eps: float = 1e-6,
                    state: MLSTMState | None = None) -> tuple[torch.Tensor, MLSTMState]:
    """Chunkwise form: O(N * chunk_size * d + N * d * dv) time, linear memory in N.

    Inside each chunk the parallel form runs vectorised over all chunks at once; only the
    ``(C, n)`` state update loops over the N / chunk_size chunks (one fused op each; the
    stabilisers come from running maxima: ``cummax``, log-depth shifted maxima for export).
    Weights that decayed under exp(-64) count as 0 (:func:`_exp_weights`). A trailing partial chunk
    (N not a multiple of ``chunk_size``) is processed as one shorter chunk, so no padding enters
    the returned state.

    Returns:
        ``h`` ``(B, NH, N, dv)`` and the state after the last token.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    state = mlstm_initial_state(q, v) if state is None else state
    n_tok = q.shape[-2]
    aligned = n_tok - n_tok % chunk_size
    pieces = []
    for start, stop, chunk in ((0, aligned, chunk_size), (aligned, n_tok, n_tok - aligned)):
        if stop > start:
            part = slice(start, stop)
            h, state = _chunkwise_aligned(q[..., part, :], k[..., part, :], v[..., part, :],
                                          i_preact[..., part], f_preact[..., part], chunk, eps,
                                          state)
            pieces.append(h)
    return torch.cat(pieces, dim=-2), state


def mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i_preact: torch.Tensor,
          f_preact: torch.Tensor, mode: str = "chunkwise", chunk_size: int = 64,
          eps: float = 1e-6) -> torch.Tensor:
    """The mLSTM outputs ``h`` ``(B, NH, N, dv)`` in the form ``mode`` (see :data:`MLSTM_MODES`)."""
    if mode == "parallel":
        return mlstm_parallel(q, k, v, i_preact, f_preact, eps)
    if mode == "chunkwise":
        return mlstm_chunkwise(q, k, v, i_preact, f_preact, chunk_size, eps)[0]
    if mode == "recurrent":
        return mlstm_recurrent(q, k, v, i_preact, f_preact, eps)[0]
    raise ValueError(f"mode must be one of {MLSTM_MODES}, got {mode!r}")


# --------------------------------------------------------------------------------------------
# thin modules: the ViL / TM-UNet mLSTM layer


class BlockDiagonalLinear(nn.Module):
    """Block-diagonal linear map without bias: each group of ``block_size`` channels is mapped
    by its own ``block_size x block_size`` matrix (xLSTM's ``LinearHeadwiseExpand``)."""

    def __init__(self, dim: int, block_size: int) -> None:
        super().__init__()
        if dim % block_size:
            raise ValueError(f"dim ({dim}) must be divisible by block_size ({block_size})")
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(dim // block_size, block_size, block_size))
        nn.init.normal_(self.weight, std=math.sqrt(2 / (5 * block_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.unflatten(-1, (-1, self.block_size))  # (..., G, bs)
        out = torch.einsum("...gi,goi->...go", blocks, self.weight)  # (..., G, bs)
        return out.flatten(-2)  # (..., G * bs)


class MLSTMLayer(nn.Module):
    """The ViL layer (Vision-LSTM's mLSTM block without outer norm and residual), expansion 1.

    up-projection to ``[a | z]``; causal depthwise conv + SiLU on ``a``; block-diagonal q, k
    (from the convolved ``a``) and v (from ``a``); input/forget gates from ``[q | k | v]``; the
    mLSTM (:func:`mlstm`); per-head LayerNorm; learnable skip; SiLU(z) output gate;
    down-projection. ``reverse=True`` runs the sequence from its last token to its first.

    Args:
        dim: token width D; the inner width is D as well.
        num_heads: mLSTM heads NH (head dim D / NH).
        qkv_block_size: block size of the q/k/v maps.
        conv_kernel_size: kernel of the causal depthwise conv.
        reverse: scan direction.
        mode: mLSTM form, one of :data:`MLSTM_MODES`; may be changed after construction.
        chunk_size: chunk length of the chunkwise form.
        eps: mLSTM normaliser epsilon.
    """

    def __init__(self, dim: int, num_heads: int = 4, qkv_block_size: int = 4,
                 conv_kernel_size: int = 4, reverse: bool = False, mode: str = "chunkwise",
                 chunk_size: int = 64, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if mode not in MLSTM_MODES:
            raise ValueError(f"mode must be one of {MLSTM_MODES}, got {mode!r}")
        self.num_heads, self.head_dim, self.reverse = num_heads, dim // num_heads, reverse
        self.mode, self.chunk_size, self.eps = mode, chunk_size, eps
        self.proj_up = nn.Linear(dim, 2 * dim, bias=False)
        self.conv1d = nn.Conv1d(dim, dim, conv_kernel_size, padding=conv_kernel_size - 1,
                                groups=dim)
        self.q_proj = BlockDiagonalLinear(dim, qkv_block_size)
        self.k_proj = BlockDiagonalLinear(dim, qkv_block_size)
        self.v_proj = BlockDiagonalLinear(dim, qkv_block_size)
        self.igate = nn.Linear(3 * dim, num_heads)
        self.fgate = nn.Linear(3 * dim, num_heads)
        self.outnorm_weight = nn.Parameter(torch.zeros(dim))  # effective scale 1 + weight
        self.outnorm_bias = nn.Parameter(torch.zeros(dim))
        self.learnable_skip = nn.Parameter(torch.ones(dim))
        self.proj_down = nn.Linear(dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Vision-LSTM's initialisation (TM-UNet as released overwrites the linear layers)."""
        dim = self.proj_down.in_features
        for proj in (self.proj_up, self.q_proj, self.k_proj, self.v_proj):
            nn.init.normal_(proj.weight, std=math.sqrt(2 / (5 * dim)))  # small_init
        nn.init.normal_(self.proj_down.weight, std=2 / math.sqrt(dim))  # wang_init, 1 block
        nn.init.zeros_(self.fgate.weight)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.num_heads))
        nn.init.zeros_(self.igate.weight)
        nn.init.normal_(self.igate.bias, std=0.1)
        nn.init.zeros_(self.outnorm_weight)
        nn.init.zeros_(self.outnorm_bias)
        nn.init.ones_(self.learnable_skip)
        self.conv1d.reset_parameters()

    def _cell(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Gates, mLSTM and per-head norm: ``(B, N, D)`` x3 -> ``(B, N, D)``."""
        gate_in = torch.cat([q, k, v], dim=-1)  # (B, N, 3D)
        i_preact = self.igate(gate_in).transpose(1, 2)  # (B, NH, N)
        f_preact = self.fgate(gate_in).transpose(1, 2)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, NH, N, d)
                   for t in (q, k, v))
        h = mlstm(q, k, v, i_preact, f_preact, self.mode, self.chunk_size, self.eps)
        h = F.layer_norm(h, (self.head_dim,), eps=1e-5)  # per-head norm (GroupNorm, NH groups)
        h = h.transpose(1, 2).flatten(2)  # (B, N, D), head-major channels
        return h * (1 + self.outnorm_weight) + self.outnorm_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` tokens -> ``(B, N, D)``; causal in the scan direction."""
        if self.reverse:
            x = x.flip(1)
        a, z = self.proj_up(x).chunk(2, dim=-1)  # (B, N, D) each
        a_conv = self.conv1d(a.transpose(1, 2))[..., : a.shape[1]]  # (B, D, N), causal
        a_conv = F.silu(a_conv.transpose(1, 2))  # (B, N, D)
        h = self._cell(self.q_proj(a_conv), self.k_proj(a_conv), self.v_proj(a))
        h = (h + self.learnable_skip * a_conv) * F.silu(z)
        out = self.proj_down(h)
        return out.flip(1) if self.reverse else out
