"""The export sidecar: what it records per family, and the checks applied when reading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medtoken.config import to_dict
from medtoken.export.sidecar import read_sidecar, sidecar_path, variant_notes, write_sidecar
from medtoken.registry import get_config
from medtoken.utils.errors import InputError


def _valid() -> dict[str, Any]:
    return {"medtoken_export": 1, "format": "onnx", "spatial_dims": 3, "in_channels": 1,
            "num_classes": 3, "roi_size": [16, 16, 16], "dynamic_batch": False,
            "batch_size": 1, "input_name": "image", "output_name": "logits",
            "normalization": {"schemes": ["zscore"], "ct_stats": [None]},
            "labels": {"0": "background", "1": "a", "2": "b"}, "file_ending": ".nii.gz"}


def test_sidecar_path_appends_json() -> None:
    assert sidecar_path("out/model.onnx") == Path("out/model.onnx.json")
    assert sidecar_path(Path("m.ts")).name == "m.ts.json"


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent", "parallel"])
def test_variant_names_the_mlstm_form(mode: str) -> None:
    cfg = to_dict(get_config("tmunet_test", **{"mstm.mlstm_mode": mode}))
    notes = variant_notes("tmunet", cfg)
    assert notes["mlstm_mode"] == mode
    assert ("chunk_size" in notes) == (mode == "chunkwise")


def test_variant_names_token_selection() -> None:
    scd = variant_notes("scd", to_dict(get_config("scd_test")))
    assert scd["token_selection"].startswith("deterministic top-k") and scd["keep_ratio"] == 0.5
    dense = variant_notes("scd", to_dict(get_config("scd_test", **{"pruning.prune_after": []})))
    assert "token_selection" not in dense
    tokenseg = variant_notes("tokenseg", to_dict(get_config("tokenseg_test")))
    assert "K = 8" in tokenseg["token_selection"] and "16 codes" in tokenseg["vq_lookup"]
    assert variant_notes("unet", to_dict(get_config("unet3d"))) == {}


def test_read_sidecar_round_trip(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    write_sidecar(model, _valid())
    assert read_sidecar(model) == _valid()


def test_missing_sidecar_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"m\.onnx\.json: missing"):
        read_sidecar(tmp_path / "m.onnx")


@pytest.mark.parametrize(("change", "message"), [
    ({"medtoken_export": 2}, "version 1"),
    ({"format": "tflite"}, "invalid format"),
    ({"roi_size": [16, 16]}, "roi_size"),
    ({"roi_size": "16"}, "roi_size"),
    ({"dynamic_batch": "no"}, "dynamic_batch"),
    ({"num_classes": True}, "num_classes"),
    ({"normalization": {"schemes": ["zscore"]}}, "not a valid plan"),
    ({"normalization": {"schemes": ["zscore", "zscore"], "ct_stats": [None, None]}},
     "2 channel"),
    ({"labels": None}, "labels"),
])
def test_invalid_sidecar_is_one_input_error(tmp_path: Path, change: dict[str, Any],
                                            message: str) -> None:
    model = tmp_path / "m.onnx"
    write_sidecar(model, {**_valid(), **change})
    with pytest.raises(InputError, match=message) as err:
        read_sidecar(model)
    assert str(err.value).startswith(str(sidecar_path(model))) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_unreadable_sidecar(tmp_path: Path, text: str) -> None:
    (tmp_path / "m.onnx.json").write_text(text)
    with pytest.raises(InputError, match=r"m\.onnx\.json"):
        read_sidecar(tmp_path / "m.onnx")
    assert json.dumps(_valid())  # the valid one stays serialisable
