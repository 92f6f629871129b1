"""fit(): resumable to the exact same weights, signal stop with checkpoint, budgets, options."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from medtoken.data.synthetic import make_synthetic_dataset
from medtoken.models.checkpoint import load_checkpoint
from medtoken.train.config import TrainConfig
from medtoken.train.fit import fit
from medtoken.utils.errors import InputError

TINY = {"channels": [4, 8]}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("fit") / "d", num_cases=5, seed=3)


def _cfg(data: Path, **kw) -> TrainConfig:
    base = {"data": str(data), "model": "unet3d", "fold": "0", "roi_size": (16, 16, 16),
            "batch_size": 1, "steps_per_epoch": 2, "val_every": 100, "warmup_steps": 1}
    return TrainConfig(**{**base, **kw})


def _interrupt_at(monkeypatch, call: int) -> dict[str, int]:
    """Make the training loop receive SIGTERM during its ``call``-th step."""
    from medtoken.train import fit as fit_module

    calls = {"n": 0}
    original = fit_module._Trainer.train_step

    def step_then_signal(self, step: int) -> float:
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, step)

    monkeypatch.setattr(fit_module._Trainer, "train_step", step_then_signal)
    return calls


def test_sigterm_checkpoint_then_resume_gives_identical_weights(data: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    fit(_cfg(data, epochs=3), tmp_path / "straight", TINY, device="cpu")
    with monkeypatch.context() as m:
        calls = _interrupt_at(m, 3)
        result = fit(_cfg(data, epochs=3), tmp_path / "resumed", TINY, device="cpu")
    assert result.interrupted_by == "SIGTERM" and calls["n"] == 3
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)  # mid-epoch state, saved on the signal
    assert not (tmp_path / "resumed" / "validation").exists()
    fit(_cfg(data, epochs=3), tmp_path / "resumed", TINY, device="cpu", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    rows = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_resume_with_other_config_is_refused(data: Path, tmp_path: Path) -> None:
    fit(_cfg(data, epochs=1), tmp_path / "r", TINY, device="cpu")
    with pytest.raises(InputError, match="different configuration"):
        fit(_cfg(data, epochs=2, lr=0.5), tmp_path / "r", TINY, device="cpu", resume=True)


def test_max_steps_budget_and_patch_check(data: Path, tmp_path: Path) -> None:
    result = fit(_cfg(data, epochs=50, max_steps=3), tmp_path / "m", TINY, device="cpu")
    assert result.steps_done == 3
    with pytest.raises(InputError, match="not divisible"):
        fit(_cfg(data, roi_size=(15, 16, 16)), tmp_path / "p", TINY, device="cpu")


def test_resume_accepts_older_config_and_changed_grad_checkpointing(data: Path,
                                                                    tmp_path: Path) -> None:
    import yaml

    run = tmp_path / "r"
    fit(_cfg(data, epochs=1), run, TINY, device="cpu")
    stored = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("accumulate", "grad_checkpointing", "amp_dtype"):  # a run from before them
        del stored["train"][key]
    (run / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    result = fit(_cfg(data, epochs=2, grad_checkpointing=True), run, TINY, device="cpu",
                 resume=True)
    assert result.steps_done == 4
    with pytest.raises(InputError, match="accumulate"):
        fit(_cfg(data, epochs=3, accumulate=2), run, TINY, device="cpu", resume=True)


def test_resume_reads_config_yaml_with_the_old_patch_size_key(data: Path, tmp_path: Path,
                                                              deprecations) -> None:
    import yaml

    run = tmp_path / "r"
    fit(_cfg(data, epochs=1), run, TINY, device="cpu")
    stored = yaml.safe_load((run / "config.yaml").read_text())
    stored["train"] = {("patch_size" if k == "roi_size" else k): v
                       for k, v in stored["train"].items()}  # as an older medtoken wrote it
    (run / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    result = fit(_cfg(data, epochs=2), run, TINY, device="cpu", resume=True)
    assert result.steps_done == 4
    assert any("'train.patch_size' is deprecated" in m for m in deprecations())
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["roi_size"] == [16, 16, 16]


@pytest.mark.parametrize(("amp", "amp_dtype", "device", "expected"), [
    (False, "fp16", "cpu", None),
    (True, "auto", "cpu", torch.bfloat16),
    (True, "bf16", "cpu", torch.bfloat16),
    (True, "fp16", "cpu", InputError),
])
def test_amp_dtype_choice(amp: bool, amp_dtype: str, device: str, expected) -> None:
    from medtoken.train.fit import _amp_dtype

    cfg = TrainConfig(amp=amp, amp_dtype=amp_dtype)
    if expected is InputError:
        with pytest.raises(InputError, match="fp16 needs CUDA"):
            _amp_dtype(cfg, torch.device(device))
    else:
        assert _amp_dtype(cfg, torch.device(device)) == expected


@pytest.mark.parametrize(("flags", "expected"), [
    ([], {"amp": False, "amp_dtype": "auto", "grad_checkpointing": False, "accumulate": 1}),
    (["--amp", "--grad-checkpointing", "--accumulate", "4"],
     {"amp": True, "amp_dtype": "auto", "grad_checkpointing": True, "accumulate": 4}),
    (["--amp", "bf16"], {"amp": True, "amp_dtype": "bf16"}),
])
def test_train_flags_reach_the_config(flags: list[str], expected: dict) -> None:
    from medtoken.cli.main import build_parser
    from medtoken.cli.train import build_train_config

    args = build_parser().parse_args(["train", "--data", "d", "--model", "unet3d", "--out", "o",
                                      *flags])
    cfg, _ = build_train_config(args)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_compiled_run_saves_plain_keys_and_may_change_compile_on_resume(
        data: Path, tmp_path: Path, monkeypatch) -> None:
    import functools

    from medtoken.train import distributed
    from medtoken.utils.compile import maybe_compile

    traced = functools.partial(maybe_compile, backend="eager")  # dynamo without inductor: fast
    monkeypatch.setattr(distributed, "maybe_compile", traced)
    run = tmp_path / "c"
    fit(_cfg(data, epochs=1, compile=True), run, TINY, device="cpu")
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert state["train_config"]["compile"] is True
    assert not [k for k in state["model"] if "_orig_mod" in k or k.startswith("model.")]
    result = fit(_cfg(data, epochs=2, compile=False), run, TINY, device="cpu", resume=True)
    assert result.steps_done == 4


@pytest.mark.slow
def test_compiled_run_resumes_to_the_uninterrupted_compiled_weights(data: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """Inductor, SIGTERM mid-epoch, resume: the same weights as one uninterrupted compiled run
    (the same tolerance as the eager resume test; inductor's kernels are deterministic)."""
    fit(_cfg(data, epochs=3, compile=True), tmp_path / "straight", TINY, device="cpu")
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        fit(_cfg(data, epochs=3, compile=True), tmp_path / "resumed", TINY, device="cpu")
    fit(_cfg(data, epochs=3, compile=True), tmp_path / "resumed", TINY, device="cpu", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)


def test_compiling_a_known_miscompile_is_refused_before_any_output(data: Path,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "refused"
    overrides = {"channels_last": True, "embed_dims": [4, 8, 8, 16, 16],
                 "mstm.chunk_size": 12, "mstm.unused_dwconv": False}
    with pytest.raises(InputError, match="channels_last=false"):
        fit(_cfg(data, model="tmunet3d_t", compile=True), run, overrides, device="cpu")
    assert not run.exists()
