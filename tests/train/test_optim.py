"""Warm-up + cosine schedule over a step or time budget."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from medtoken.train.optim import ProgressSchedule, build_optimizer


def _opt() -> torch.optim.Optimizer:
    return build_optimizer(torch.nn.Linear(2, 2), lr=1.0, weight_decay=0.1)


def test_no_weight_decay_on_biases() -> None:
    opt = _opt()
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[1]["params"][0].ndim == 1


def test_warmup_then_cosine_to_floor() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, base_lr=1.0, max_steps=10, max_seconds=None, warmup_steps=2,
                             min_lr_ratio=0.1)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        sched.step(0.0)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] == pytest.approx(0.1)
    assert sched.finished()


def test_time_budget_drives_progress_and_state_round_trips() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, 1.0, max_steps=None, max_seconds=100.0, warmup_steps=0)
    sched.step(50.0)
    assert sched.progress() == pytest.approx(0.5)
    other = ProgressSchedule(_opt(), 1.0, None, 100.0, 0)
    other.load_state_dict(sched.state_dict())
    assert other.lr() == pytest.approx(sched.lr())


def _lrs(sched: ProgressSchedule, opt: torch.optim.Optimizer, steps: int) -> list[float]:
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        sched.step(0.0)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_exponential_steps_once_per_epoch() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, 1e-3, max_steps=9, max_seconds=None, warmup_steps=0,
                             kind="exponential", gamma=0.98, steps_per_epoch=3)
    expected = [1e-3 * 0.98 ** (s // 3) for s in range(10)]  # constant within an epoch
    assert _lrs(sched, opt, 9) == pytest.approx(expected)


def test_poly_steps_every_step_to_zero() -> None:
    opt = _opt()
    sched = ProgressSchedule(opt, 1e-2, max_steps=4, max_seconds=None, warmup_steps=0,
                             kind="poly", exponent=0.9)
    assert _lrs(sched, opt, 4) == pytest.approx([1e-2 * (1 - s / 4) ** 0.9 for s in range(5)])
    assert opt.param_groups[0]["lr"] == 0.0 and sched.finished()


def test_sgd_and_adam_and_layer_decay_groups() -> None:
    from medtoken.train.optim import build_optimizer, layer_lr_scale

    sgd = build_optimizer(torch.nn.Linear(2, 2), 0.1, 3e-5, name="sgd")
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.99 and sgd.defaults["nesterov"]
    adam = build_optimizer(torch.nn.Linear(2, 2), 0.1, 0.0, name="adam", betas=(0.9, 0.95))
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.9, 0.95)
    assert layer_lr_scale("encoder.blocks.0.attn.qkv.weight", 12, 0.75) == pytest.approx(
        0.75 ** 12)
    assert layer_lr_scale("encoder.blocks.11.mlp.fc1.weight", 12, 0.75) == pytest.approx(0.75)
    assert layer_lr_scale("encoder.pos_embed", 12, 0.75) == pytest.approx(0.75 ** 13)
    assert layer_lr_scale("decoder.conv.weight", 12, 0.75) == 1.0


def test_layer_decay_scales_the_schedule_per_group() -> None:
    from medtoken import create_model
    from medtoken.train.optim import build_optimizer

    model = create_model("scd_test")
    opt = build_optimizer(model, 1.0, 0.05, layer_decay=0.5)
    sched = ProgressSchedule(opt, 1.0, max_steps=10, max_seconds=None, warmup_steps=0)
    depth = 1 + max(int(n.split(".")[2]) for n, _ in model.named_parameters()
                    if n.startswith("encoder.blocks."))
    scales = sorted({g["lr_scale"] for g in opt.param_groups}, reverse=True)
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(0.5 ** (depth + 1))
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(sched.lr() * group["lr_scale"])


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_fused_on_cpu_takes_the_same_steps_as_the_per_tensor_loop(name: str) -> None:
    torch.manual_seed(0)
    fused_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    loop_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, 0.01, 0.1, name=name)
    assert all(g["fused"] for g in fused.param_groups)
    loop = build_optimizer(loop_model, 0.01, 0.1, name=name)
    for group in loop.param_groups:
        group["fused"] = None  # PyTorch's own default on the CPU: a loop over the tensors
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_loading_a_per_tensor_loop_state_keeps_the_fused_kernels() -> None:
    from medtoken.train.optim import load_optimizer_state

    model = torch.nn.Linear(2, 2)
    old = build_optimizer(model, 0.1, 0.0)
    for group in old.param_groups:
        group["fused"] = None  # as checkpoints written before the fused kernels were chosen
    model(torch.randn(3, 2)).sum().backward()
    old.step()
    opt = build_optimizer(model, 0.1, 0.0)
    load_optimizer_state(opt, old.state_dict())
    assert all(g["fused"] for g in opt.param_groups)
    step = opt.state[model.weight]["step"]
    assert float(step) == 1.0
    assert step.dtype == torch.float32 and step.device == model.weight.device  # as fused needs


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_state_saved_channels_first_steps_a_channels_last_model_correctly(name: str) -> None:
    # a TM-UNet checkpoint from before its conv weights went channels-last, resumed after: the
    # fused kernels walk memory order, so the moments must follow the weights' layout
    from medtoken.train.optim import load_optimizer_state

    torch.manual_seed(0)
    saved_model = torch.nn.Conv2d(4, 8, 3)
    saved = build_optimizer(saved_model, 0.1, 0.0, name=name, momentum=0.9)
    for _ in range(2):
        saved.zero_grad()
        saved_model(torch.randn(2, 4, 6, 6)).square().sum().backward()
        saved.step()
    x = torch.randn(2, 4, 6, 6)
    results = []
    for fused in (True, None):  # None: the per-tensor loop, which follows strides
        model = torch.nn.Conv2d(4, 8, 3)
        model.load_state_dict(saved_model.state_dict())
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = build_optimizer(model, 0.1, 0.0, name=name, momentum=0.9)
        for group in opt.param_groups:
            group["fused"] = fused
        load_optimizer_state(opt, copy.deepcopy(saved.state_dict()))  # as if read from disk
        model(x).square().sum().backward()
        opt.step()
        results.append(model.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
