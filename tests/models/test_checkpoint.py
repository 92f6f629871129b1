"""Checkpoints: atomic, weights-only, refuse foreign or malicious files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from medtoken import create_model, load_model
from medtoken.config import to_dict
from medtoken.models.checkpoint import load_checkpoint, load_model_checkpoint, save_checkpoint
from medtoken.utils.errors import InputError


def _tiny():
    return create_model("unet3d", roi_size=(16, 16, 16), channels=(4, 8), num_classes=3)


def _save(model, path: Path, **extra) -> None:
    save_checkpoint(path, {"family": "unet", "model_config": to_dict(model.config),
                           "model": model.state_dict(), **extra})


def test_round_trip_from_file_and_run_folder(tmp_path: Path) -> None:
    model = _tiny().eval()
    _save(model, tmp_path / "checkpoint_last.pt")
    x = torch.randn(1, 1, 16, 16, 16)
    for source in (tmp_path / "checkpoint_last.pt", tmp_path):
        loaded = load_model(source)
        assert not loaded.training
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]  # no temp files left


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path(_Evil.marker),))


def test_code_running_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "family": "unet", "payload": _Evil()}, path)
    assert not marker.exists()
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(pickle.dumps({"a": object()}))
    with pytest.raises(InputError):
        load_checkpoint(path)


def test_wrong_family_and_version_are_refused(tmp_path: Path) -> None:
    model = _tiny()
    _save(model, tmp_path / "a.pt")
    with pytest.raises(InputError, match=r"family 'unet', expected 'scd'"):
        load_model_checkpoint(tmp_path / "a.pt", expect_family="scd")
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    state["format_version"] = 99
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(InputError, match=r"format version 99"):
        load_checkpoint(tmp_path / "b.pt")


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    _save(_tiny(), tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.pt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_missing_run_folder_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no checkpoint_best\.pt"):
        load_checkpoint(tmp_path)


def test_torch_load_is_called_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _save(_tiny(), tmp_path / "a.pt")
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(tmp_path / "a.pt")
    assert calls and all(c.get("weights_only") is True for c in calls)


def test_code_running_checkpoint_is_refused_by_predict_in_one_line(tmp_path: Path,
                                                                  capsys) -> None:
    from medtoken.cli.main import main

    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    evil = tmp_path / "run" / "checkpoint_best.pt"
    evil.parent.mkdir()
    torch.save({"format_version": 1, "family": "unet", "payload": _Evil()}, evil)
    (tmp_path / "in").mkdir()
    for model in (evil, evil.parent):  # the file, and the run folder holding it
        assert main(["predict", "--model", str(model), "-i", str(tmp_path / "in"), "-o",
                     str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(evil) in err[0] and "refused" in err[0], err
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("edit", "drop", "message"), [
    ({"family": "nosuchfamily"}, (), r"a\.pt: unknown model family 'nosuchfamily'; known: .*unet"),
    ({"model_config": {"depth": 3}}, (), r"a\.pt: unknown key 'depth'"),
    ({}, ("model",), r"a\.pt: incomplete checkpoint: no model"),
], ids=["unknown family", "config of another family", "no weights"])
def test_foreign_checkpoint_is_a_clear_input_error(edit: dict, drop: tuple[str, ...],
                                                   message: str, tmp_path: Path) -> None:
    _save(_tiny(), tmp_path / "a.pt")
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    state.update(edit)
    for key in drop:
        del state[key]
    torch.save(state, tmp_path / "a.pt")
    with pytest.raises(InputError, match=message):
        load_model(tmp_path / "a.pt")


@pytest.mark.parametrize("content", [torch.zeros(3), {"state_dict": {}}, [1, 2]],
                         ids=["tensor", "foreign dict", "list"])
def test_non_medtoken_file_is_refused(content, tmp_path: Path) -> None:
    torch.save(content, tmp_path / "x.pt")
    with pytest.raises(InputError, match=r"x\.pt: not a medtoken checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_inference_overrides_change_the_config_and_keep_the_weights(tmp_path: Path) -> None:
    model = create_model("tokenseg_test")
    path = tmp_path / "ts.pt"
    save_checkpoint(path, {"family": "tokenseg", "model_config": to_dict(model.config),
                           "model": model.state_dict()})
    loaded = load_model_checkpoint(path, overrides={"selection.num_selected": 5})
    assert loaded.model.config.selection.num_selected == 5
    assert loaded.state["model_config"]["selection"]["num_selected"] == 5
    x = torch.randn(1, 1, *model.config.roi_size)
    with torch.inference_mode():
        assert loaded.model.forward_with_aux(x).info["token_idx"].shape == (1, 5)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0)
    with pytest.raises(InputError, match="weights do not match"):
        load_model_checkpoint(path, overrides={"embed_dim": 8})
    with pytest.raises(InputError, match="unknown key"):
        load_model_checkpoint(path, overrides={"selection.nope": 1})


def test_checkpoint_with_the_old_pruning_selection_key_loads(tmp_path: Path,
                                                              deprecations) -> None:
    model = create_model("scd_test", **{"pruning.method": "random"}).eval()
    old = to_dict(model.config)
    old["pruning"] = {("selection" if k == "method" else k): v
                      for k, v in old["pruning"].items()}  # as an older medtoken saved it
    path = tmp_path / "scd.pt"
    save_checkpoint(path, {"family": "scd", "model_config": old, "model": model.state_dict()})
    loaded = load_model_checkpoint(path)
    assert loaded.model.config == model.config and loaded.model.config.pruning.method == "random"
    assert loaded.state["model_config"]["pruning"]["method"] == "random"  # today's spelling
    assert "selection" not in loaded.state["model_config"]["pruning"]
    assert any("'pruning.selection' is deprecated; use 'pruning.method'" in m
               for m in deprecations())
    x = torch.randn(1, 1, *model.config.roi_size)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model(x), model(x))
    again = load_model_checkpoint(path, overrides={"pruning.selection": "topk"})  # old --set key
    assert again.model.config.pruning.method == "topk"


def test_fold_run_dirs_sorts_by_fold_number(tmp_path: Path) -> None:
    from medtoken.models.checkpoint import FOLD_DIR, fold_run_dirs

    for name in (FOLD_DIR.format(fold=10), "fold_2", "fold_x", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "fold_3").write_text("a file, not a run")
    assert [p.name for p in fold_run_dirs(tmp_path)] == ["fold_2", "fold_10"]
    assert fold_run_dirs(tmp_path / "missing") == []
