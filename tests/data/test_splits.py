"""Cross-validation folds: nnU-Net/scikit-learn equivalence, splits files, MSD fold keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtoken.data.datasets import Case, DatasetInfo
from medtoken.data.splits import get_fold, kfold_splits
from medtoken.utils.errors import InputError

# Computed once with scikit-learn 1.9.1:
# KFold(n_splits=5, shuffle=True, random_state=12345).split(ids) -> ids[test_idx].
# RandomState(12345).shuffle(arange(10)) gives [0, 7, 3, 9, 4, 6, 1, 8, 2, 5]; folds take two
# consecutive entries each, and scikit-learn returns every fold's indices in sorted order.
GOLDEN_VAL_10 = [["case_00", "case_07"], ["case_03", "case_09"], ["case_04", "case_06"],
                 ["case_01", "case_08"], ["case_02", "case_05"]]
# 13 ids: 13 % 5 = 3, so the first three folds hold 3 cases and the last two 2.
GOLDEN_VAL_13 = [["c00", "c07", "c09"], ["c03", "c06", "c10"], ["c08", "c11", "c12"],
                 ["c01", "c04"], ["c02", "c05"]]


def _info(tmp_path: Path, ids: list[str], folds: dict[str, int] | None = None) -> DatasetInfo:
    cases = tuple(Case(i, (tmp_path / f"{i}.nii.gz",), tmp_path / f"{i}_l.nii.gz")
                  for i in sorted(ids))
    return DatasetInfo(tmp_path, "msd", cases, {0: "background", 1: "a"}, ("MRI",), ".nii.gz",
                       3, folds or {})


@pytest.mark.parametrize(("ids", "golden"), [
    ([f"case_{i:02d}" for i in range(10)], GOLDEN_VAL_10),
    ([f"c{i:02d}" for i in range(13)], GOLDEN_VAL_13),
])
def test_kfold_matches_golden_values(ids: list[str], golden: list[list[str]]) -> None:
    splits = kfold_splits(list(reversed(ids)))  # input order must not matter: ids are sorted
    assert [s["val"] for s in splits] == golden
    for split in splits:
        assert split["train"] == sorted(set(ids) - set(split["val"]))


@pytest.mark.parametrize("n", [5, 7, 208])
def test_kfold_partitions_the_cases(n: int) -> None:
    ids = [f"id{i}" for i in range(n)]
    splits = kfold_splits(ids)
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(ids)
    assert max(len(s["val"]) for s in splits) - min(len(s["val"]) for s in splits) <= 1
    assert all(not set(s["train"]) & set(s["val"]) for s in splits)


@pytest.mark.parametrize("n", [5, 12, 53, 208])
def test_kfold_equals_sklearn(n: int) -> None:
    model_selection = pytest.importorskip("sklearn.model_selection")
    ids = sorted(f"hippocampus_{i:03d}" for i in range(n))
    kfold = model_selection.KFold(n_splits=5, shuffle=True, random_state=12345)
    expected = [{"train": [ids[i] for i in tr], "val": [ids[i] for i in te]}
                for tr, te in kfold.split(ids)]
    assert kfold_splits(ids) == expected


def test_kfold_rejects_too_few_cases() -> None:
    with pytest.raises(ValueError, match="larger than the number of cases"):
        kfold_splits(["a", "b"], n_splits=5)


def test_get_fold_default_and_all(tmp_path: Path) -> None:
    info = _info(tmp_path, [f"case_{i:02d}" for i in range(10)])
    train, val = get_fold(info, 3)
    assert val == GOLDEN_VAL_10[3] and len(train) == 8
    assert get_fold(info, "3") == (train, val)
    assert get_fold(info, "all") == (list(info.case_ids), [])


@pytest.mark.parametrize("fold", [5, -1, "7", "x", 1.5])
def test_get_fold_out_of_range(tmp_path: Path, fold: object) -> None:
    info = _info(tmp_path, [f"case_{i:02d}" for i in range(10)])
    with pytest.raises(InputError) as err:
        get_fold(info, fold)  # type: ignore[arg-type]
    assert err.value.where == "--fold"


def test_get_fold_too_few_cases(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="use --fold all"):
        get_fold(_info(tmp_path, ["a", "b", "c"]), 0)


@pytest.mark.parametrize("name", ["splits_final.json", "splits.json"])
def test_splits_file_is_honoured(tmp_path: Path, name: str) -> None:
    info = _info(tmp_path, ["a", "b", "c", "d"])
    splits = [{"train": ["a", "b"], "val": ["c", "d"]}, {"train": ["c", "d"], "val": ["a", "b"]}]
    (tmp_path / name).write_text(json.dumps(splits))
    assert get_fold(info, 1) == (["c", "d"], ["a", "b"])
    with pytest.raises(InputError, match="fold 2 is out of range"):
        get_fold(info, 2)


def test_splits_file_with_unknown_ids(tmp_path: Path) -> None:
    info = _info(tmp_path, ["a", "b", "c"])
    (tmp_path / "splits_final.json").write_text(json.dumps([{"train": ["a", "zz"], "val": ["b"]}]))
    with pytest.raises(InputError) as err:
        get_fold(info, 0)
    assert err.value.where == str(tmp_path / "splits_final.json") and "zz" in err.value.problem


def test_splits_file_with_bad_structure(tmp_path: Path) -> None:
    (tmp_path / "splits_final.json").write_text(json.dumps({"train": []}))
    with pytest.raises(InputError, match=r"splits_final\.json: expected a list"):
        get_fold(_info(tmp_path, ["a", "b"]), 0)


def test_msd_fold_keys(tmp_path: Path) -> None:
    info = _info(tmp_path, ["a", "b", "c", "d", "e"], folds={"a": 0, "b": 1, "c": 0, "d": 1})
    assert get_fold(info, 0) == (["b", "d", "e"], ["a", "c"])
    assert get_fold(info, 1) == (["a", "c", "e"], ["b", "d"])
    with pytest.raises(InputError, match="2 folds"):
        get_fold(info, 2)
