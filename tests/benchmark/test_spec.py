"""Spec, input-size and sweep parsing, with the errors users see."""

from __future__ import annotations

import pytest

from medtoken.benchmark.spec import parse_input_size, parse_sweep, resolve_config
from medtoken.config import ModelSpec, parse_spec, parse_specs, split_top_level
from medtoken.utils.errors import InputError


@pytest.mark.parametrize(("text", "pieces"), [
    ("a,b", ["a", "b"]),
    ("unet3d:roi_size=[16,16,16],channels=[4,8]", ["unet3d:roi_size=[16,16,16]", "channels=[4,8]"]),
    ("x={a: 1, b: [2,3]},y", ["x={a: 1, b: [2,3]}", "y"]),
    ("single", ["single"]),
])
def test_split_top_level_keeps_bracketed_commas(text: str, pieces: list[str]) -> None:
    assert split_top_level(text) == pieces


def test_parse_specs_groups_overrides_with_their_preset() -> None:
    specs = parse_specs("tmunet_b:mlstm_mode=parallel,num_classes=2,unet3d:channels=[4,8],"
                        "scd_btcv:pruning.keep_ratio=1.0,dynunet3d")
    assert [s.preset for s in specs] == ["tmunet_b", "unet3d", "scd_btcv", "dynunet3d"]
    assert dict(specs[0].overrides) == {"mlstm_mode": "parallel", "num_classes": 2}
    assert dict(specs[1].overrides) == {"channels": [4, 8]}
    assert dict(specs[2].overrides) == {"pruning.keep_ratio": 1.0}
    assert specs[3].overrides == ()


def test_spec_text_round_trips() -> None:
    spec = parse_spec("unet3d:channels=[4,8],norm=batch,dropout=0.5")
    assert spec.text == "unet3d:channels=[4, 8],norm=batch,dropout=0.5"
    assert parse_spec(spec.text) == spec


def test_with_override_replaces_the_key() -> None:
    spec = ModelSpec("unet3d", (("dropout", 0.1),)).with_override("dropout", 0.2)
    assert spec.overrides == (("dropout", 0.2),)


@pytest.mark.parametrize("text", ["channels=[4,8]", ",unet3d", ":a=1", "unet3d:=3"])
def test_parse_specs_rejects_malformed_specs(text: str) -> None:
    with pytest.raises(InputError):
        parse_specs(text)


def test_parse_spec_wants_exactly_one() -> None:
    with pytest.raises(InputError, match="expected one model spec"):
        parse_spec("unet3d,unet2d")


@pytest.mark.parametrize(("text", "size"), [("1,1,96,96,96", (1, 1, 96, 96, 96)),
                                            ("2,3,64,64", (2, 3, 64, 64))])
def test_parse_input_size(text: str, size: tuple[int, ...]) -> None:
    assert parse_input_size(text) == size


@pytest.mark.parametrize("text", ["1,1,96", "1,1,0,8,8", "a,b,c,d", "1,1,2,3,4,5"])
def test_parse_input_size_rejects(text: str) -> None:
    with pytest.raises(InputError, match="--input-size"):
        parse_input_size(text)


def test_parse_sweep_values_are_yaml() -> None:
    sweep = parse_sweep("roi=[8,8],[16,16]")
    assert sweep.key == "roi" and sweep.values == ([8, 8], [16, 16])
    assert parse_sweep("pruning.keep_ratio=0.1,0.5,1").values == (0.1, 0.5, 1)


def test_parse_sweep_roi_size_values_are_tuples() -> None:
    assert parse_sweep("roi_size=[8,8],[8,16]").values == ((8, 8), (8, 16))


def test_parse_sweep_spatial_size_is_an_old_name_of_roi_size(deprecations) -> None:
    assert parse_sweep("spatial_size=[8,8],[8,16]") == parse_sweep("roi_size=[8,8],[8,16]")
    assert deprecations() == ["'--sweep spatial_size' is deprecated; use '--sweep roi_size' (the "
                              "old spelling will be removed in a future release)"]
    with pytest.raises(InputError, match="roi_size values must be"):
        parse_sweep("spatial_size=[8,0]")


@pytest.mark.parametrize("text", ["batch_size", "=1,2", "batch_size=0,2", "batch_size=a",
                                  "in_channels=1,2", "roi_size=8,16",
                                  "roi_size=[8],[16]", "roi_size=[8,0]"])
def test_parse_sweep_rejects(text: str) -> None:
    with pytest.raises(InputError, match="--sweep"):
        parse_sweep(text)


def test_resolve_config_takes_channels_and_roi_from_the_input_size() -> None:
    cfg = resolve_config(parse_spec("unet3d:channels=[4,8],num_classes=3"), (2, 2, 16, 24, 32))
    assert cfg.in_channels == 2 and cfg.roi_size == (16, 24, 32)
    assert cfg.channels == (4, 8) and cfg.num_classes == 3


def test_spec_roi_size_is_replaced_by_the_input_size(caplog: pytest.LogCaptureFixture) -> None:
    cfg = resolve_config(parse_spec("unet3d:roi_size=[16,16,16],channels=[4,8]"),
                         (1, 1, 16, 16, 16))
    assert cfg.roi_size == (16, 16, 16) and not caplog.records
    cfg = resolve_config(parse_spec("unet3d:roi_size=[8,8,8]"), (1, 1, 16, 16, 16))
    assert cfg.roi_size == (16, 16, 16) and "replaced by --input-size" in caplog.text


def test_resolve_config_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(InputError) as err:
        resolve_config(parse_spec("unet3d:chanels=[4,8]"), (1, 1, 16, 16, 16))
    assert err.value.where == "--models"
    assert "unknown key 'chanels'" in err.value.problem and "channels" in err.value.problem


def test_resolve_config_unknown_preset_lists_presets() -> None:
    with pytest.raises(InputError, match=r"unknown model preset 'unet9d'.*unet3d"):
        resolve_config(parse_spec("unet9d"), (1, 1, 16, 16, 16))


def test_resolve_config_rejects_2d_input_for_3d_model() -> None:
    with pytest.raises(InputError, match="is 3D but the input size has 2 spatial dims"):
        resolve_config(parse_spec("unet3d"), (1, 1, 16, 16))
