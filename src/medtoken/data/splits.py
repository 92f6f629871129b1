"""Cross-validation folds, identical to nnU-Net's.

nnU-Net v2 (``generate_crossval_split``) splits the sorted case ids with scikit-learn's
``KFold(n_splits=5, shuffle=True, random_state=12345)``. :func:`kfold_splits` reproduces that
exactly with numpy: the indices are shuffled by ``np.random.RandomState(seed)``, the first
``n % k`` folds get one extra case, and both lists keep the sorted order (scikit-learn builds them
from boolean masks). A ``splits_final.json`` in the dataset folder, or MSD ``"fold"`` keys, win.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtoken.data.datasets import DatasetInfo
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json

__all__ = ["SPLITS_FILES", "get_fold", "kfold_splits", "read_splits_file"]

SPLITS_FILES = ("splits_final.json", "splits.json")  # looked up in this order in the dataset root
NUM_FOLDS = 5
FOLD_SEED = 12345


def kfold_splits(case_ids: Sequence[str], n_splits: int = NUM_FOLDS,
                 seed: int = FOLD_SEED) -> list[dict[str, list[str]]]:
    """nnU-Net's k-fold split of ``case_ids`` (sorted first).

    Returns:
        ``n_splits`` dicts ``{"train": [...], "val": [...]}``; both lists are sorted.
    """
    ids = sorted(case_ids)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    if n_splits > len(ids):
        raise ValueError(f"n_splits={n_splits} is larger than the number of cases ({len(ids)})")
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)  # sklearn check_random_state(seed).shuffle
    fold_sizes = np.full(n_splits, len(ids) // n_splits, dtype=int)
    fold_sizes[: len(ids) % n_splits] += 1
    splits = []
    start = 0
    for size in fold_sizes:
        val_mask = np.zeros(len(ids), dtype=bool)
        val_mask[order[start:start + size]] = True
        start += size
        splits.append({"train": [ids[i] for i in np.flatnonzero(~val_mask)],
                       "val": [ids[i] for i in np.flatnonzero(val_mask)]})
    return splits


def read_splits_file(path: Path, case_ids: Sequence[str]) -> list[dict[str, list[str]]]:
    """Read an nnU-Net ``splits_final.json``: a list of ``{"train": [...], "val": [...]}``.

    Raises:
        InputError: invalid JSON or structure, or ids that are not in ``case_ids``.
    """
    splits = read_json(path)
    if not isinstance(splits, list) or not splits or not all(
            isinstance(s, dict) and isinstance(s.get("train"), list)
            and isinstance(s.get("val"), list) for s in splits):
        raise InputError(path, "expected a list of {'train': [...], 'val': [...]} objects")
    known = set(case_ids)
    for index, split in enumerate(splits):
        unknown = sorted({str(c) for c in split["train"] + split["val"]} - known)
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InputError(path, f"fold {index} names {len(unknown)} case ids that are not in "
                                   f"the dataset: {shown}")
    return [{"train": [str(c) for c in s["train"]], "val": [str(c) for c in s["val"]]}
            for s in splits]


def _folds_from_keys(info: DatasetInfo) -> list[dict[str, list[str]]]:
    """Folds from MSD ``"fold"`` keys; cases without a fold are always in training."""
    num_folds = max(info.folds.values()) + 1
    return [{"train": [c for c in info.case_ids if info.folds.get(c) != k],
             "val": [c for c in info.case_ids if info.folds.get(c) == k]}
            for k in range(num_folds)]


def _dataset_splits(info: DatasetInfo) -> list[dict[str, list[str]]]:
    for name in SPLITS_FILES:
        if (info.root / name).is_file():
            return read_splits_file(info.root / name, info.case_ids)
    if info.folds:
        return _folds_from_keys(info)
    if len(info.case_ids) < NUM_FOLDS:
        raise InputError("--fold", f"the dataset has {len(info.case_ids)} cases, too few for "
                                   f"{NUM_FOLDS}-fold cross-validation; use --fold all")
    return kfold_splits(info.case_ids, NUM_FOLDS, FOLD_SEED)


def get_fold(info: DatasetInfo, fold: int | str) -> tuple[list[str], list[str]]:
    """Training and validation case ids of one fold.

    Args:
        info: the dataset; a ``splits_final.json`` (or ``splits.json``) in its root, or MSD
            ``"fold"`` keys, define the folds, else nnU-Net's 5-fold split.
        fold: ``0..k-1``, or ``"all"`` to train on every case (no validation).

    Returns:
        ``(train_ids, val_ids)``.

    Raises:
        InputError: the fold is out of range or the splits file is invalid.
    """
    if isinstance(fold, str) and fold.strip().lower() == "all":
        return list(info.case_ids), []
    if isinstance(fold, int) and not isinstance(fold, bool):
        index = fold
    elif isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        index = int(fold)
    else:
        raise InputError("--fold", f"must be an integer or 'all', got {fold!r}")
    splits = _dataset_splits(info)
    if not 0 <= index < len(splits):
        raise InputError("--fold", f"fold {index} is out of range: the dataset has "
                                   f"{len(splits)} folds (0..{len(splits) - 1}) or 'all'")
    return list(splits[index]["train"]), list(splits[index]["val"])
