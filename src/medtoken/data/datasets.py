"""Dataset layouts: Medical Segmentation Decathlon, nnU-Net v2 raw, and 2D ``images/`` + ``masks/``.

A folder of DICOM series folders (one series per subfolder, no ``dataset.json``) is the
``"dicom"`` layout: images only, for ``check-dataset`` and ``predict``; training needs labels.

:func:`load_dataset` detects the layout and lists the cases from the file names and
``dataset.json`` only; it does not read images (:func:`medtoken.data.check.check_dataset` does).
Files whose names start with ``.`` or ``_`` (macOS ``._`` junk in MSD archives) are ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medtoken.data.dicom import is_dicom_folder
from medtoken.data.headers import peek_spatial_dims
from medtoken.data.io import (
    DICOM_OUTPUT_ENDING,
    IMAGE_ENDINGS,
    PIL_ENDINGS,
    read_label,
    split_file_ending,
)
from medtoken.utils.errors import InputError
from medtoken.utils.jsonio import read_json_object

__all__ = ["Case", "DatasetInfo", "Problem", "list_input_cases", "load_dataset", "parse_labels",
           "scan_dataset"]

NOT_A_DATASET = ("not a dataset: expected MSD (dataset.json with 'training'), nnU-Net v2 raw "
                 "(dataset.json + imagesTr/), 2D (images/ + masks/) or DICOM series folders")
_CHANNEL_NAME = re.compile(r"(.+)_(\d{4})")  # nnU-Net: {case}_{XXXX}
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Case:
    """One case: its image file(s) and label file."""

    case_id: str
    images: tuple[Path, ...]  # per channel a file or DICOM series folder, or one multi-channel file
    label: Path | None


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset (missing file, bad values, ...)."""

    case_id: str | None
    path: str
    message: str

    def __str__(self) -> str:
        prefix = "" if self.case_id is None else f"{self.case_id}: "
        return f"{prefix}{self.path}: {self.message}"


@dataclass(frozen=True)
class DatasetInfo:
    """A training dataset as listed on disk.

    Attributes:
        root: the dataset folder.
        layout: ``"msd"``, ``"nnunet"``, ``"folder2d"`` or ``"dicom"`` (images only).
        cases: sorted by case id.
        labels: label value -> name, background 0 included.
        channel_names: one name per image channel (``"CT"`` selects CT normalisation).
        file_ending: ending of the label files (and of predictions written for this dataset).
        spatial_dims: 2 or 3.
        folds: case id -> fold, from MSD ``"fold"`` keys (empty when there are none).
        name: the dataset name from ``dataset.json`` (or the folder name).
        num_training: ``numTraining`` from ``dataset.json``, if given.
    """

    root: Path
    layout: str
    cases: tuple[Case, ...]
    labels: dict[int, str]
    channel_names: tuple[str, ...]
    file_ending: str
    spatial_dims: int
    folds: dict[str, int] = field(default_factory=dict)
    name: str = ""
    num_training: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of output classes: largest label value + 1."""
        return max(self.labels) + 1

    @property
    def num_channels(self) -> int:
        """Number of image channels."""
        return len(self.channel_names)

    @property
    def case_ids(self) -> tuple[str, ...]:
        """Sorted case ids."""
        return tuple(c.case_id for c in self.cases)

    def case(self, case_id: str) -> Case:
        """The case with this id (``KeyError`` if there is none)."""
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(f"no case {case_id!r} in dataset {self.root}")


def _visible_files(folder: Path, endings: Iterable[str]) -> list[Path]:
    """Files in ``folder`` with one of ``endings`` (any case), hidden and ``_`` names skipped."""
    if not folder.is_dir():
        return []
    lowered = tuple(e.lower() for e in endings)
    return sorted(p for p in folder.iterdir() if p.is_file()
                  and not p.name.startswith((".", "_"))
                  and split_file_ending(p)[1].lower() in lowered)


def parse_labels(raw: Any, json_path: str | Path) -> dict[int, str]:
    """``labels`` of MSD (value -> name) or nnU-Net (name -> value) as {value: name}."""
    if not isinstance(raw, dict) or not raw:
        raise InputError(json_path, "'labels' must be a non-empty mapping")
    if any(isinstance(v, (list, tuple)) for v in raw.values()):
        raise InputError(json_path, "region-based labels are not supported")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in raw.values()):
        if "ignore" in raw:
            raise InputError(json_path, "the 'ignore' label is not supported")
        labels = {int(v): str(k) for k, v in raw.items()}
        if len(labels) != len(raw):
            raise InputError(json_path, "'labels' maps two names to the same value")
    elif all(str(k).lstrip("-").isdigit() for k in raw):
        labels = {int(k): str(v) for k, v in raw.items()}
    else:
        raise InputError(json_path, "'labels' must map values to names (MSD) or names to "
                                    "integer values (nnU-Net)")
    if 0 not in labels or min(labels) < 0:
        raise InputError(json_path, f"'labels' must contain background 0 and no negative values, "
                                    f"got {sorted(labels)}")
    return dict(sorted(labels.items()))


def _parse_channels(raw: Any, json_path: Path, key: str) -> tuple[str, ...]:
    """``{"0": "T2", "1": "ADC"}`` -> ``("T2", "ADC")``."""
    if not isinstance(raw, dict) or not raw or not all(str(k).isdigit() for k in raw):
        raise InputError(json_path, f"'{key}' must map channel indices to names")
    channels = {int(k): str(v) for k, v in raw.items()}
    if sorted(channels) != list(range(len(channels))):
        raise InputError(json_path, f"'{key}' must number channels 0..{len(channels) - 1}, "
                                    f"got {sorted(channels)}")
    return tuple(channels[k] for k in range(len(channels)))


def _spatial_dims(cases: list[Case], ending: str) -> int:
    if ending.lower() in PIL_ENDINGS:
        return 2
    for case in cases[:1]:
        dims = peek_spatial_dims(case.images[0])
        if dims is not None:
            return dims
    return 3


def _msd_case(root: Path, item: Any, index: int, channels: tuple[str, ...],
              json_path: Path, problems: list[Problem]) -> tuple[Case | None, Any]:
    """One ``training`` entry of an MSD dataset.json; problems are appended, not raised."""
    if not isinstance(item, dict) or not item.get("image"):
        problems.append(Problem(None, str(json_path), f"training item {index} has no 'image'"))
        return None, None
    raw = item["image"]
    images = tuple(root / p for p in ([raw] if isinstance(raw, str) else raw))
    stem, ending = split_file_ending(images[0])
    case_id = stem
    if len(images) > 1 or not images[0].exists():
        match = _CHANNEL_NAME.fullmatch(stem)
        if match and match[2] == "0000":  # a list of {case}_{XXXX} files
            case_id = match[1]
        elif len(images) == 1 and (images[0].parent / f"{stem}_0000{ending}").exists():
            # nnU-Net v1 style: dataset.json names the case, the files carry _XXXX
            images = tuple(images[0].parent / f"{stem}_{k:04d}{ending}"
                           for k in range(len(channels)))
    label = root / item["label"] if item.get("label") else None
    bad = [Problem(case_id, str(p), "image file not found") for p in images if not p.is_file()]
    if label is None:
        bad.append(Problem(case_id, str(json_path), f"training item {index} has no 'label'"))
    elif not label.is_file():
        bad.append(Problem(case_id, str(label), "label file not found"))
    problems.extend(bad)
    return (None if bad else Case(case_id, images, label)), item.get("fold")


def _scan_msd(root: Path, meta: dict[str, Any], json_path: Path,
              problems: list[Problem]) -> DatasetInfo:
    labels = parse_labels(meta.get("labels"), json_path)
    channels = (_parse_channels(meta["modality"], json_path, "modality")
                if "modality" in meta else ("image",))
    training = meta["training"]
    if not isinstance(training, list):
        raise InputError(json_path, "'training' must be a list of {'image', 'label'} items")
    cases: dict[str, Case] = {}
    folds: dict[str, int] = {}
    for index, item in enumerate(training):
        case, fold = _msd_case(root, item, index, channels, json_path, problems)
        if case is None:
            continue
        if case.case_id in cases:
            problems.append(Problem(case.case_id, str(case.images[0]),
                                    f"duplicate case id (training item {index})"))
            continue
        cases[case.case_id] = case
        if isinstance(fold, int) and not isinstance(fold, bool):
            folds[case.case_id] = fold
    ordered = [cases[k] for k in sorted(cases)]
    first = next((str(it["image"]) for it in training if isinstance(it, dict) and
                  isinstance(it.get("image"), str)), ".nii.gz")
    ending = split_file_ending(first)[1]
    return DatasetInfo(root, "msd", tuple(ordered), labels, channels, ending,
                       _spatial_dims(ordered, ending), folds, str(meta.get("name", root.name)),
                       meta.get("numTraining"))


def _group_channel_files(files: list[Path], ending: str,
                         problems: list[Problem]) -> dict[str, dict[int, Path]]:
    """``{case}_{XXXX}{ending}`` files -> {case: {channel: path}}."""
    groups: dict[str, dict[int, Path]] = {}
    for path in files:
        match = _CHANNEL_NAME.fullmatch(path.name[: -len(ending)])
        if match is None:
            problems.append(Problem(None, str(path), f"image not named {{case}}_{{XXXX}}{ending}"))
            continue
        groups.setdefault(match[1], {})[int(match[2])] = path
    return groups


def _scan_nnunet(root: Path, meta: dict[str, Any], json_path: Path,
                 problems: list[Problem]) -> DatasetInfo:
    labels = parse_labels(meta.get("labels"), json_path)
    channels = _parse_channels(meta["channel_names"], json_path, "channel_names")
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        found = _visible_files(images_dir, IMAGE_ENDINGS)
        ending = split_file_ending(found[0])[1] if found else ".nii.gz"
    groups = _group_channel_files(_visible_files(images_dir, [ending]), ending, problems)
    cases = []
    for case_id in sorted(groups):
        have = groups[case_id]
        bad = [Problem(case_id, str(images_dir / f"{case_id}_{k:04d}{ending}"),
                       f"missing channel {k:04d} ({channels[k]})")
               for k in range(len(channels)) if k not in have]
        bad += [Problem(case_id, str(have[k]), f"channel {k:04d} is not in channel_names "
                                               f"({len(channels)} channels)")
                for k in sorted(have) if k >= len(channels)]
        label = labels_dir / f"{case_id}{ending}"
        if not label.is_file():
            bad.append(Problem(case_id, str(label), "label file not found"))
        problems.extend(bad)
        if not bad:
            cases.append(Case(case_id, tuple(have[k] for k in range(len(channels))), label))
    for path in _visible_files(labels_dir, [ending]):
        case_id = path.name[: -len(ending)]
        if case_id not in groups:
            problems.append(Problem(case_id, str(path), "label file has no image in imagesTr/"))
    return DatasetInfo(root, "nnunet", tuple(cases), labels, channels, ending,
                       _spatial_dims(cases, ending), {}, str(meta.get("name", root.name)),
                       meta.get("numTraining"))


def _scan_mask_labels(cases: list[Case], problems: list[Problem]) -> dict[int, str]:
    """Label values found in the masks: {0: background, 1: foreground} for binary masks."""
    values: set[int] = {0}
    for case in cases:
        assert case.label is not None
        try:
            labels = read_label(case.label)[0]
            present = (np.flatnonzero(np.bincount(labels.ravel())) if labels.dtype == np.uint8
                       else np.unique(labels))
            values.update(int(v) for v in present)
        except InputError as err:
            problems.append(Problem(case.case_id, str(case.label), err.problem))
    if values == {0, 1}:
        return {0: "background", 1: "foreground"}
    return {v: ("background" if v == 0 else f"class_{v}") for v in sorted(values)}


def _scan_folder2d(root: Path, meta: dict[str, Any] | None, json_path: Path,
                   problems: list[Problem]) -> DatasetInfo:
    masks: dict[str, Path] = {}
    for path in _visible_files(root / "masks", PIL_ENDINGS):
        masks.setdefault(split_file_ending(path)[0], path)
    cases: dict[str, Case] = {}
    used: set[str] = set()
    for path in _visible_files(root / "images", PIL_ENDINGS):
        case_id = split_file_ending(path)[0]
        if case_id in cases:
            problems.append(Problem(case_id, str(path), f"duplicate case id (also "
                                                        f"{cases[case_id].images[0].name})"))
            continue
        key = case_id if case_id in masks else f"{case_id}_mask"
        if key not in masks:
            problems.append(Problem(case_id, str(root / "masks"), f"no mask named {case_id}.png"))
            continue
        used.add(key)
        cases[case_id] = Case(case_id, (path,), masks[key])
    for key in sorted(set(masks) - used):
        problems.append(Problem(key, str(masks[key]), "mask has no image in images/"))
    ordered = [cases[k] for k in sorted(cases)]
    meta = meta or {}
    labels = (parse_labels(meta["labels"], json_path) if "labels" in meta
              else _scan_mask_labels(ordered, problems))
    if "channel_names" in meta:
        channels = _parse_channels(meta["channel_names"], json_path, "channel_names")
    else:
        channels = ("gray",)
        if ordered:
            try:
                with Image.open(ordered[0].images[0]) as im:
                    channels = ("gray",) if im.mode in _GRAY_MODES else ("R", "G", "B")
            except OSError:
                pass  # unreadable: check_dataset reports it
    return DatasetInfo(root, "folder2d", tuple(ordered), labels, channels, ".png", 2, {},
                       str(meta.get("name", root.name)), meta.get("numTraining"))


def dicom_series_folders(folder: Path) -> list[Path]:
    """Subfolders of ``folder`` that hold a DICOM series (hidden and ``_`` names skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_"))
                  and is_dicom_folder(p))


def _scan_dicom(root: Path, series: list[Path]) -> DatasetInfo:
    """A folder of DICOM series folders: one unlabelled case per series (3D, one channel)."""
    cases = tuple(Case(p.name, (p,), None) for p in series)
    return DatasetInfo(root, "dicom", cases, {0: "background"}, ("image",), DICOM_OUTPUT_ENDING,
                       3, {}, root.name)


def scan_dataset(root: str | os.PathLike[str]) -> tuple[DatasetInfo, list[Problem]]:
    """Detect the layout and list the cases, collecting every structural problem.

    Cases with a missing or misnamed file are left out of the returned info and reported.

    Raises:
        InputError: the layout itself cannot be recognised or ``dataset.json`` is invalid.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    json_path = root / "dataset.json"
    meta = read_json_object(json_path, "dataset.json") if json_path.is_file() else None
    problems: list[Problem] = []
    if meta is not None and "training" in meta:
        info = _scan_msd(root, meta, json_path, problems)
    elif meta is not None and "channel_names" in meta and (root / "imagesTr").is_dir():
        info = _scan_nnunet(root, meta, json_path, problems)
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        info = _scan_folder2d(root, meta, json_path, problems)
    elif meta is None and (series := [root] if is_dicom_folder(root)
                           else dicom_series_folders(root)):
        info = _scan_dicom(root, series)
    else:
        raise InputError(root, NOT_A_DATASET)
    if not info.cases and not problems:
        raise InputError(root, f"no cases found ({info.layout} layout)")
    return info, problems


def load_dataset(root: str | os.PathLike[str]) -> DatasetInfo:
    """Detect the layout of ``root`` and list its cases (file names only; no image is read).

    Raises:
        InputError: unknown layout, invalid ``dataset.json``, or missing/misnamed files (the
            first one is named; :func:`medtoken.data.check.check_dataset` lists them all).
    """
    info, problems = scan_dataset(root)
    if info.layout == "dicom":
        raise InputError(root, "holds DICOM series folders without labels: fine for predict and "
                         "check-dataset; a training dataset needs labels (MSD or nnU-Net raw "
                         "layout)")
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        first = problems[0]
        case = f"case {first.case_id}: " if first.case_id else ""
        raise InputError(first.path, f"{case}{first.message}{more}")
    return info


def list_input_cases(path: str | os.PathLike[str], num_channels: int) -> list[Case]:
    """Cases to predict: an image file, a DICOM series folder, or a folder of either.

    In a folder of nnU-Net-named files (``{case}_{XXXX}{ending}``) the files of a case are its
    channels ``0000..num_channels-1``; otherwise every image file is one case. Every subfolder
    holding a DICOM series is one case named after the subfolder.

    Raises:
        InputError: nothing to read, or a case lacks some of its channels.
    """
    path = Path(path)
    if is_dicom_folder(path) and not _visible_files(path, IMAGE_ENDINGS):
        return [Case(path.name, (path,), None)]  # the folder is one series
    if path.is_file():
        stem, ending = split_file_ending(path)
        if ending.lower() not in IMAGE_ENDINGS:
            raise InputError(path, f"unsupported file type {ending!r}")
        match = _CHANNEL_NAME.fullmatch(stem)
        case_id = match[1] if match and match[2] == "0000" and num_channels == 1 else stem
        return [Case(case_id, (path,), None)]
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    series = [Case(p.name, (p,), None) for p in dicom_series_folders(path)]
    files = _visible_files(path, IMAGE_ENDINGS)
    if not files and not series:
        raise InputError(path, f"no image files found ({', '.join(IMAGE_ENDINGS)}) and no DICOM "
                         "series folders")
    cases = _file_cases(path, files, num_channels)
    taken = {c.case_id for c in cases}
    clash = sorted(c.case_id for c in series if c.case_id in taken)
    if clash:
        raise InputError(path, f"case {clash[0]!r} is both an image file and a DICOM series "
                         "folder")
    return sorted(cases + series, key=lambda c: c.case_id)


def _file_cases(path: Path, files: list[Path], num_channels: int) -> list[Case]:
    """The cases of the image files in a folder (see :func:`list_input_cases`)."""
    if not files:
        return []
    stems = [split_file_ending(f)[0] for f in files]
    matches = [_CHANNEL_NAME.fullmatch(s) for s in stems]
    if all(matches) and any(m[2] == "0000" for m in matches if m):
        groups: dict[str, dict[int, Path]] = {}
        for f, m in zip(files, matches, strict=True):
            assert m is not None
            groups.setdefault(m[1], {})[int(m[2])] = f
        for case_id, have in groups.items():
            if sorted(have) != list(range(num_channels)):
                found = ", ".join(f"{k:04d}" for k in sorted(have))
                raise InputError(path, f"case {case_id!r} has channels {found}; expected "
                                       f"0000..{num_channels - 1:04d}")
        return [Case(c, tuple(groups[c][k] for k in range(num_channels)), None)
                for c in sorted(groups)]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise InputError(path, f"several files for case {dup!r}")
    cases = [Case(s, (f,), None) for s, f in zip(stems, files, strict=True)]
    return sorted(cases, key=lambda c: c.case_id)
