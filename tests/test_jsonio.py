"""JSON files from users: parsed, or one InputError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json, read_json_object


def test_reads_objects_and_lists(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    (tmp_path / "b.json").write_text("[1]")
    assert read_json_object(tmp_path / "a.json", "a") == {"x": [1, 2]}
    assert read_json(tmp_path / "b.json") == [1]


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "cannot read JSON"), (b"\xff\xfe", "cannot read JSON"),
    (b"[1, 2]", "thing.json must hold a JSON object"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_json_object(path, "thing.json")
    assert "bad.json" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read JSON"):
        read_json(tmp_path / "nope.json")


def test_nan_to_none_reaches_nested_values() -> None:
    from medtoken.utils.jsonio import nan_to_none

    value = {"a": float("nan"), "b": [1.0, (float("nan"), "x")], "c": {"d": 2}}
    assert nan_to_none(value) == {"a": None, "b": [1.0, [None, "x"]], "c": {"d": 2}}


def test_missing_file_named_by_what(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.json: no such file \(thing.json\)"):
        read_json_object(tmp_path / "nope.json", "thing.json")
