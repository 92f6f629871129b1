"""Peak-memory estimate before training: exact static parts, measured activations, the refusal."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from medtoken import create_model
from medtoken.models.base import ModelConfig, SegmentationModel
from medtoken.train.memory import (
    MemoryEstimate,
    check_memory_fits,
    estimate_training_memory,
    saved_activation_bytes,
)
from medtoken.utils.errors import InputError
from medtoken.utils.memory import available_memory

CPU = torch.device("cpu")


class _ConvBN(SegmentationModel):
    """conv(1->2, 3^3) -> BatchNorm -> dropout: 56 + 4 parameters, 2 + 2 + 1 buffer elements."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.norm = nn.BatchNorm3d(2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.conv(x)))


def _tiny_unet() -> SegmentationModel:
    return create_model("unet3d", channels=[4, 8], roi_size=(16, 16, 16))


def test_static_parts_are_the_analytic_parameter_bytes() -> None:
    model = _ConvBN(ModelConfig(roi_size=(8, 8, 8)))
    est = estimate_training_memory(model, 1, (8, 8, 8), CPU)
    weights = 1 * 2 * 27 + 2 + 2 + 2  # conv weight + bias, BatchNorm weight + bias
    # + buffers: running mean and var (2 + 2 float32), num_batches_tracked (1 int64)
    assert est.params_bytes == 4 * weights + 4 * (2 + 2) + 8 * 1
    assert est.gradients_bytes == 4 * weights
    assert est.optimizer_bytes == 2 * 4 * weights  # AdamW: exp_avg + exp_avg_sq
    assert est.total_bytes == (est.params_bytes + est.gradients_bytes + est.optimizer_bytes
                               + est.activations_bytes)


def test_optimizer_states_and_loss_follow_the_recipe() -> None:
    """The estimate counts the run's optimiser (SGD: one momentum buffer) and measures the
    run's loss, as fit builds them (TrainConfig, train.losses.build_loss)."""
    from medtoken.train.config import TrainConfig
    from medtoken.train.memory import optimizer_states
    from medtoken.train.recipes import recipe_values

    assert [optimizer_states(TrainConfig(optimizer=o)) for o in ("adamw", "adam", "sgd")] == [
        2, 2, 1]
    assert optimizer_states(TrainConfig(optimizer="sgd", momentum=0.0)) == 0
    model = _ConvBN(ModelConfig(roi_size=(8, 8, 8)))
    adamw = estimate_training_memory(model, 1, (8, 8, 8), CPU)
    sgd = estimate_training_memory(model, 1, (8, 8, 8), CPU,
                                   train_config=TrainConfig(**recipe_values("nnunet")))
    assert sgd.optimizer_bytes * 2 == adamw.optimizer_bytes == 2 * adamw.gradients_bytes
    unet = _tiny_unet()
    dice_ce = estimate_training_memory(unet, 1, (16, 16, 16), CPU)
    focal = estimate_training_memory(unet, 1, (16, 16, 16), CPU,
                                     train_config=TrainConfig(**recipe_values("tmunet")))
    assert focal.activations_bytes != dice_ce.activations_bytes  # another loss, other tensors


def test_a_model_with_its_own_loss_gets_no_recipe_loss() -> None:
    """build_loss (training, memory probe, benchmark): the default recipe's DiceCE, or zero
    for a model whose forward_with_aux computes the whole segmentation loss."""
    from medtoken.train.config import TrainConfig
    from medtoken.train.losses import build_loss

    logits, y = torch.randn(2, 3, 4, 4, 4), torch.randint(0, 3, (2, 1, 4, 4, 4))
    unet = create_model("unet3d", num_classes=3, channels=[4, 8], roi_size=(16, 16, 16))
    assert float(build_loss(TrainConfig(), unet)(logits, y)) > 0.0
    pytest.importorskip("dynamic_network_architectures")
    assert float(build_loss(TrainConfig(), create_model("nnunet_test"))(logits[:, :2],
                                                                        y.clamp(max=1))) == 0.0


def test_preset_parameter_bytes() -> None:
    model = create_model("unet3d")  # 1,186,765 parameters (``medtoken models unet3d``)
    est = estimate_training_memory(model, 1, model.config.roi_size, CPU)
    assert est.gradients_bytes == 4 * 1_186_765 and est.optimizer_bytes == 8 * 1_186_765


def test_probe_leaves_model_state_and_rng_untouched() -> None:
    model = _ConvBN(ModelConfig(roi_size=(8, 8, 8))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    estimate_training_memory(model, 2, (8, 8, 8), CPU)
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("small", "large"), [((16, 16, 16), (32, 32, 32)),
                                              ((16, 16, 16), (16, 32, 32))])
def test_saved_bytes_scale_linearly_with_voxels(small: tuple[int, ...],
                                                large: tuple[int, ...]) -> None:
    """The claim the estimate rests on: saved bytes per voxel barely depend on the patch."""
    model = _tiny_unet()
    a, _ = saved_activation_bytes(model, small, CPU, batch_size=2)
    b, _ = saved_activation_bytes(model, large, CPU, batch_size=2)
    ratio = (b / math.prod(large)) / (a / math.prod(small))
    assert 0.9 <= ratio <= 1.0 + 1e-9  # the small probe errs on the safe (larger) side


def test_saved_bytes_and_estimate_scale_linearly_with_batch() -> None:
    model = _tiny_unet()
    two, _ = saved_activation_bytes(model, (16, 16, 16), CPU, batch_size=2)
    four, _ = saved_activation_bytes(model, (16, 16, 16), CPU, batch_size=4)
    assert four == pytest.approx(2 * two, rel=0.05)
    est = [estimate_training_memory(model, b, (32, 32, 32), CPU).total_bytes for b in (1, 2, 4)]
    assert est[0] < est[1] < est[2]
    assert est[2] - est[1] == pytest.approx(2 * (est[1] - est[0]), rel=1e-3)


def test_absurd_batch_is_refused_with_the_estimate() -> None:
    model = _tiny_unet()
    est = estimate_training_memory(model, 1_000_000, (16, 16, 16), CPU)
    available = available_memory(CPU)
    assert available is not None
    with pytest.raises(InputError) as info:
        check_memory_fits(est, available)
    message = str(info.value)
    assert message.startswith("--batch-size/--roi-size: estimated peak ")
    assert "(params " in message and "activations " in message
    assert "available" in message and "--force-memory" in message and "\n" not in message


def test_estimate_does_not_depend_on_the_callers_grad_mode() -> None:
    model = _tiny_unet()
    plain = estimate_training_memory(model, 2, (16, 16, 16), CPU)
    with torch.inference_mode():
        inside = estimate_training_memory(model, 2, (16, 16, 16), CPU)
    assert inside == plain and plain.activations_bytes > 0


def test_tiny_batch_fits() -> None:
    est = estimate_training_memory(_tiny_unet(), 1, (16, 16, 16), CPU)
    check_memory_fits(est, available_memory(CPU))
    check_memory_fits(est, None)  # unknown availability: no refusal


@pytest.mark.parametrize(("total", "text"), [(31.2 * 2**30, "31.2 GiB"), (3 * 2**20, "3.0 MiB")])
def test_summary_units(total: float, text: str) -> None:
    est = MemoryEstimate(0, 0, 0, int(total), 1, (8, 8), (8, 8))
    assert est.summary().startswith(f"estimated peak {text} (params 0.0, gradients 0.0")


def test_available_cpu_memory_is_plausible() -> None:
    available = available_memory(CPU)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert available is not None and 0 < available <= total


@pytest.mark.parametrize("name", ["unet3d", "tmunet3d_test", "tokenseg_test"])
@pytest.mark.slow
def test_estimate_matches_measured_allocator_peak(name: str) -> None:
    """Against the peak of PyTorch's CPU allocations in a second training step (profiler)."""
    from monai.losses import DiceCELoss
    from torch.profiler import ProfilerActivity, profile

    from medtoken.train.optim import build_optimizer

    model = create_model(name, roi_size=(32, 32, 32))
    batch = 2
    est = estimate_training_memory(model, batch, (32, 32, 32), CPU)
    optimizer = build_optimizer(model.train(), 1e-4, 3e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    x = torch.randn(batch, 1, 32, 32, 32)
    y = torch.randint(0, model.num_classes, (batch, 1, 32, 32, 32))

    def step() -> None:
        out = model.forward_with_aux(x, y)
        loss = loss_fn(out.logits.float(), y) + sum(out.losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # the AdamW states exist from here on
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        pytest.skip("this torch build's profiler exposes no memory events")
    events = sorted((e.start_ns(), e.nbytes()) for e in results.events() if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    # at the start: parameters, gradients (freed by zero_grad later), AdamW states, the batch
    measured = est.params_bytes + est.gradients_bytes + est.optimizer_bytes + peak
    measured += x.nbytes + y.nbytes
    assert 0.8 <= est.total_bytes / measured <= 1.3


def test_train_refuses_a_batch_that_cannot_fit_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medtoken.cli.main import main
    from medtoken.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "d", num_cases=5, seed=2)
    run = tmp_path / "run"
    code = main(["train", "--data", str(data), "--model", "unet3d", "--out", str(run),
                 "--roi-size", "16", "16", "16", "--batch-size", "10000000",
                 "--max-steps", "1", "--no-progress", "--set", "channels=[4,8]"])
    err = capsys.readouterr().err
    assert code == 2 and "estimated peak" in err and "--force-memory" in err
    assert len(err.strip().splitlines()) == 1 and not run.exists()
