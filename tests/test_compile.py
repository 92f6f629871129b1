"""maybe_compile: compiled and eager models agree (forward and gradients) on a tiny model of each
family, all marked slow (inductor compiles for seconds to minutes each on this CPU; the wiring
of --compile into fit, predict and benchmark is tested fast with dynamo's eager backend).

Tolerance: rtol 1e-4, atol 5e-5 on logits and on every parameter's gradient in float32 (inductor
fuses and reorders reductions, so equality holds to rounding, not bit for bit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medtoken import create_model
from medtoken.utils.compile import exporting, maybe_compile

RTOL, ATOL = 1e-4, 5e-5
FAST = ("unet3d", {"roi_size": (16, 16, 16), "channels": (4, 8)})
SLOW = [
    ("unet2d", {"roi_size": (32, 32), "channels": (4, 8, 16)}),
    ("dynunet3d", {"roi_size": (16, 16, 16), "base_filters": 4, "max_filters": 16}),
    ("tmunet_test", {}), ("tmunet3d_test", {}), ("scd_test", {}), ("scd2d_test", {}),
    ("tokenseg_test", {}), ("tokenseg2d_test", {}), ("mstm_layer_test", {}),
    ("tmunet_test", {"channels_last": False}),
]
# why TM-UNet's channels-last layout is off by default in 3D: compiled, its gradients are wrong
# (torch 2.13, CPU inductor; eager is right: tests/models/test_tmunet.py); a pass here means a
# newer torch fixed it and the 3D default can follow the 2D one
KNOWN_WRONG = [("tmunet3d_test", {"channels_last": True})]


def test_disabled_is_the_identity_and_bad_mode_is_refused() -> None:
    model = torch.nn.Linear(2, 2)
    assert maybe_compile(model, False) is model
    with pytest.raises(ValueError, match="compile mode"):
        maybe_compile(model, True, mode="fastest")


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _train_step(forward, model: torch.nn.Module, x: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same draws for models with randomness in training
    out = forward(x, y)
    (out.logits.float().square().mean() + sum(out.losses.values())).backward()
    return out.logits.detach(), _grads(model)


def _check_agreement(name: str, overrides: dict) -> None:
    model = create_model(name, num_classes=3, **overrides)
    x = torch.randn(2, model.in_channels, *model.config.roi_size)
    y = torch.randint(0, 3, (2, 1, *model.config.roi_size))
    model.eval()
    compiled = maybe_compile(model, True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x), rtol=RTOL, atol=ATOL)
    model.train()
    logits_e, grads_e = _train_step(model.forward_with_aux, model, x, y)
    logits_c, grads_c = _train_step(maybe_compile(model.forward_with_aux, True), model, x, y)
    torch.testing.assert_close(logits_c, logits_e, rtol=RTOL, atol=ATOL)
    assert grads_c.keys() == grads_e.keys()
    for key, grad in grads_e.items():
        torch.testing.assert_close(grads_c[key], grad, rtol=RTOL, atol=ATOL, msg=key)


@pytest.mark.slow
def test_compiled_equals_eager_fast_representative() -> None:
    with torch._inductor.config.patch(fallback_random=True):  # eager's random draws
        _check_agreement(*FAST)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides"), SLOW,
                         ids=[n + ("_channels_first" if o.get("channels_last") is False else "")
                              for n, o in SLOW])
def test_compiled_equals_eager_every_family(name: str, overrides: dict) -> None:
    with torch._inductor.config.patch(fallback_random=True):  # eager's random draws
        _check_agreement(name, overrides)


@pytest.mark.slow
@pytest.mark.xfail(reason="inductor (torch 2.13, CPU): wrong gradients of a channels_last_3d "
                   "TM-UNet", strict=True)
@pytest.mark.parametrize(("name", "overrides"), KNOWN_WRONG, ids=["tmunet3d_channels_last"])
def test_compiled_channels_last_3d_tmunet(name: str, overrides: dict) -> None:
    with torch._inductor.config.patch(fallback_random=True):
        _check_agreement(name, overrides)


class _Probe(torch.nn.Module):
    """Records what :func:`exporting` said in each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(exporting())
        return x + 1


def test_exporting_is_true_only_while_a_graph_is_captured(tmp_path: Path) -> None:
    probe = _Probe()
    probe(torch.zeros(1))
    torch.jit.trace(probe, (torch.zeros(1),), check_trace=False)
    torch.onnx.export(probe, (torch.zeros(1),), str(tmp_path / "probe.onnx"), dynamo=False)
    probe(torch.zeros(1))  # torch.onnx is imported now, no export running
    assert probe.seen == [False, True, True, False]


def test_a_forward_does_not_import_torch_onnx() -> None:
    # importing torch.onnx took ~0.1 s of a fresh process's first TM-UNet forward (118-130 ms
    # against 43-51 ms for later ones) when exporting() asked it whether an export was running
    code = ("import sys, torch; from medtoken import create_model; "
            "create_model('tmunet_test').eval()(torch.zeros(1, 3, 64, 64)); "
            "print('torch.onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
