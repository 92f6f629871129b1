"""Model size and cost: parameters, FLOPs (``torch.utils.flop_counter``) and token counts.

FLOPs follow ``FlopCounterMode``'s convention: a multiply-add is 2 FLOPs (a ``(M, K) @ (K, N)``
product is ``2·M·N·K``), so GFLOPs = 2 × GMACs, the unit fvcore, thop and torchprofile report.
Only the operators the counter knows (matmuls, convolutions, attention) are counted; element-wise
work (norms, activations, softmax, interpolation) is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["FLOP_COUNTER", "count_flops", "count_parameters", "token_info"]

FLOP_COUNTER = (f"torch.utils.flop_counter.FlopCounterMode (torch {torch.__version__}); "
                "GFLOPs = 2 x GMACs")
MAX_LISTED_ELEMENTS = 64  # tensors larger than this are recorded by shape, not by value


def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                   out_shape: Any = None, **kwargs: Any) -> int:
    return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))


def _sdpa_cpu_backward_flop(grad_out_shape: Any, query_shape: Any, key_shape: Any,
                            value_shape: Any, *args: Any, out_shape: Any = None,
                            **kwargs: Any) -> int:
    return int(flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape,
                                                     value_shape))


# The CPU flash-attention kernels are missing from torch's FLOP registry (2.13); they share the
# CUDA kernels' argument layout, so they are counted with the same formulas.
CPU_ATTENTION_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs counted while ``fn()`` runs (forward and, if ``fn`` calls it, backward)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def _plain(value: Any) -> Any:
    """JSON-ready form of an info value: numbers and lists as they are, big tensors by shape."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= MAX_LISTED_ELEMENTS:
            return value.detach().cpu().tolist()
        return {"shape": list(value.shape)}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def token_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``forward_with_aux(x).info`` whose key mentions tokens, JSON-ready.

    Token models put their per-stage token counts there (e.g. ``tokens_per_stage: [216, 54]``);
    index tensors larger than :data:`MAX_LISTED_ELEMENTS` are recorded by their shape.
    """
    return {str(k): _plain(v) for k, v in info.items() if "token" in str(k).lower()}
