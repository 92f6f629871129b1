"""TM-UNet family: shapes, exact parameter counts, mLSTM-form equivalence, training smoke test."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medtoken.models.tmunet import TMUNet, TMUNetConfig
from medtoken.registry import create_model, get_config


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# released totals (spec 2.4); without the never-called depthwise conv units; 3D frozen here
RELEASED = {"tmunet_t": (388_561, 385_105), "tmunet_s": (1_476_513, 1_469_601),
            "tmunet_b": (5_750_785, 5_736_961)}
PRESETS_3D = {"tmunet3d_t": 787_739, "tmunet3d_s": 3_059_379, "tmunet3d_b": 12_054_563}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_parameter_counts_are_exact(name: str) -> None:
    released, without_unused = RELEASED[name]
    assert _num_params(create_model(name)) == released
    assert _num_params(create_model(name, **{"mstm.unused_dwconv": False})) == without_unused


@pytest.mark.parametrize("name", sorted(RELEASED))
@pytest.mark.parametrize("num_classes", [3, 14])
def test_multiclass_head_adds_one_filter_per_extra_class(name: str, num_classes: int) -> None:
    config = get_config(name)
    extra = (num_classes - 1) * (config.embed_dims[0] // 2 + 1)
    model = create_model(name, num_classes=num_classes)
    assert _num_params(model) == RELEASED[name][0] + extra
    two_logits = create_model(name, binary_single_logit=False)
    assert _num_params(two_logits) == RELEASED[name][0] + config.embed_dims[0] // 2 + 1


@pytest.mark.parametrize("name", sorted(PRESETS_3D))
def test_3d_preset_parameter_counts(name: str) -> None:
    model = create_model(name)
    assert _num_params(model) == PRESETS_3D[name]
    assert model.input_multiple == (8, 8, 8)
    assert not model.needs_unused_parameter_search


@pytest.mark.parametrize(("name", "shape"), [
    ("tmunet_test", (2, 3, 64, 64)),
    ("tmunet_t", (1, 3, 64, 96)),
    ("tmunet3d_test", (2, 1, 16, 16, 24)),
    ("tmunet3d_t", (1, 1, 16, 24, 16)),
])
def test_output_shape(name: str, shape: tuple[int, ...]) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(shape))
    assert logits.shape == (shape[0], model.num_classes, *shape[2:])
    assert torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape"), [
    ("tmunet_t", (2, 3, 256, 256)), ("tmunet_s", (2, 3, 256, 256)),
    ("tmunet_b", (2, 3, 256, 256)), ("tmunet_t", (1, 3, 512, 512)),
    ("tmunet3d_s", (2, 1, 40, 56, 40)),
])
def test_output_shape_full_size(name: str, shape: tuple[int, ...]) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (shape[0], model.num_classes, *shape[2:])


def test_input_not_divisible_is_rejected() -> None:
    model = create_model("tmunet_test")
    assert model.input_multiple == (32, 32)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="spatial"):
        model(torch.randn(1, 3, 64, 64, 64))


def test_binary_single_logit_head_is_the_released_sigmoid() -> None:
    model = create_model("tmunet_test").eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert torch.equal(logits[:, 0], torch.zeros_like(logits[:, 0]))
    torch.testing.assert_close(logits.softmax(1)[:, 1], torch.sigmoid(logits[:, 1]))
    assert model.head.out_channels == 1


@pytest.mark.parametrize("name", ["tmunet_test", "tmunet3d_test"])
@pytest.mark.parametrize("pool_mode", ["as_released", "spatial"])
def test_model_outputs_agree_across_mlstm_modes(name: str, pool_mode: str) -> None:
    config = get_config(name)
    shape = (2, config.in_channels, *config.roi_size)
    x = torch.randn(shape)
    outputs = []
    for mode in ("parallel", "chunkwise", "recurrent"):
        torch.manual_seed(0)
        model = create_model(name, **{"mstm.mlstm_mode": mode, "mstm.pool_mode": pool_mode})
        with torch.no_grad():
            outputs.append(model.eval()(x))
    for out in outputs[1:]:
        assert (out - outputs[0]).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["tmunet_test", "tmunet3d_test"])
def test_channels_last_equals_channels_first(name: str) -> None:
    # the layout is a speed choice only: same weights -> same logits and gradients to rounding
    config = get_config(name)
    x = torch.randn(2, config.in_channels, *config.roi_size)
    results = []
    for channels_last in (True, False):
        torch.manual_seed(0)
        model = create_model(name, channels_last=channels_last)
        conv_weight = model.encoders[1][0].weight  # C_in > 1: the layouts differ
        assert conv_weight.is_contiguous(memory_format=torch.channels_last if x.dim() == 4
                                         else torch.channels_last_3d) == channels_last
        logits = model(x)
        assert logits.is_contiguous()  # channels-first out, whatever the layout inside
        logits.square().mean().backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()
                                           if p.grad is not None}))
    (logits_cl, grads_cl), (logits_cf, grads_cf) = results
    torch.testing.assert_close(logits_cl, logits_cf, rtol=1e-5, atol=1e-6)
    assert grads_cl.keys() == grads_cf.keys()
    for key, grad in grads_cf.items():
        torch.testing.assert_close(grads_cl[key], grad, rtol=1e-4, atol=1e-6, msg=key)


def test_channels_last_by_default_in_2d_only() -> None:
    assert get_config("tmunet_s").uses_channels_last
    assert not get_config("tmunet3d_s").uses_channels_last
    assert get_config("tmunet3d_s", channels_last=True).uses_channels_last


@pytest.mark.slow
def test_released_tiny_outputs_agree_across_mlstm_modes_at_256() -> None:
    x = torch.randn(2, 3, 256, 256)
    outputs = []
    for mode in ("parallel", "chunkwise"):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(create_model("tmunet_t", **{"mstm.mlstm_mode": mode}).eval()(x))
    assert (outputs[1] - outputs[0]).abs().max() <= 1e-4


def test_determinism_with_fixed_seed() -> None:
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(123)
            model = create_model("tmunet_test")
            x = torch.randn(2, 3, 64, 64)
            runs.append(model(x))
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(runs[0], runs[1])


def _blob_batch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy RGB images with one bright disc each, and the disc masks ``(2, S, S)``."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.stack([(yy - cy) ** 2 + (xx - cx) ** 2 < r**2
                         for cy, cx, r in ((10, 12, 6), (20, 18, 8))]).long()  # (2, S, S)
    images = masks[:, None].float().expand(-1, 3, -1, -1) + 0.3 * torch.randn(2, 3, size, size)
    return images, masks


def test_overfits_one_batch() -> None:
    images, masks = _blob_batch()
    model = create_model("tmunet_test")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, masks)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(b < a for a, b in itertools.pairwise(losses[:21])) >= 15, losses
    pred = logits.detach().argmax(1)  # train mode: BN uses the batch statistics
    dice = 2 * (pred * masks).sum() / (pred.sum() + masks.sum())
    assert dice > 0.9, (dice, losses)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("embed_dims", (8, 16, 32, 64), "embed_dims"),
    ("embed_dims", (1, 16, 32, 64, 128), "embed_dims"),
    ("embed_dims", (8, 16, 30, 64, 128), "C3"),
    ("embed_dims", (8, 16, 32, 66, 128), "D4"),
    ("strides", (2, 2, 2, 2), "strides"),
    ("strides", (2, 2, 2, 2, 3), "strides"),
    ("roi_size", (96, 80), "roi_size"),
])
def test_config_rejects_invalid_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TMUNetConfig(**{field: value})  # type: ignore[arg-type]


def test_unused_dwconv_is_declared_to_ddp() -> None:
    assert TMUNet(TMUNetConfig(embed_dims=(8, 16, 32, 64, 128))).needs_unused_parameter_search
    assert not create_model("tmunet_test").needs_unused_parameter_search


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = create_model("tmunet_test").eval()
    x = torch.randn(1, 3, 64, 64)
    path = str(tmp_path / "tmunet.onnx")
    torch.onnx.export(model, (x,), path, dynamo=False)
    session = ort.InferenceSession(path)
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), atol=1e-5, rtol=1e-4)
