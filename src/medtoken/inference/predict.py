"""Predict cases and folders with one model or an ensemble; outputs keep the input's geometry.

One output per case, ``{case}{file_ending}`` (``.png`` for 2D input), integer labels in the
smallest integer type, same shape and affine/spacing as the input; with ``save_probabilities``
also ``{case}.npz`` holding ``probabilities`` ``(K, *S)`` (nnU-Net's convention). A case that
cannot be read, or whose estimated memory does not fit, is reported and skipped; the others are
still predicted. See docs/inference.md for stitching, devices and the memory estimate.

A model trained at a target spacing (the checkpoint's ``dataset["target_spacing"]``, e.g. an
nnunet plan's) predicts each case resampled to it (``options.target_spacing``, ``--spacing``),
and the class probabilities are resampled back to the case's own shape before the argmax (nnU-Net's
export: order 1, separate z when anisotropic); a case already at that spacing is not resampled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtoken.data.datasets import Case
from medtoken.data.io import ImageMeta, read_image, write_label
from medtoken.data.preprocess import NormalizationPlan, normalize
from medtoken.data.resample import (
    new_shape_for,
    parse_spacing,
    resample_image,
    resample_probabilities,
)
from medtoken.inference.memory import (
    CaseEstimate,
    check_case_fits,
    choose_accumulate_device,
    estimate_case,
    window_bytes,
)
from medtoken.inference.options import PredictOptions
from medtoken.inference.slab import Member, count_windows, label_dtype, predict_slabwise
from medtoken.inference.sliding_window import predict_probabilities
from medtoken.models.checkpoint import LoadedModel
from medtoken.postprocessing.plan import PostprocessingPlan, apply_postprocessing, read_plan
from medtoken.utils.atomic import atomic_path
from medtoken.utils.compile import maybe_compile
from medtoken.utils.errors import InputError
from medtoken.utils.memory import available_memory

__all__ = ["PredictOptions", "PredictReport", "check_output_folder", "check_postprocessing",
           "predict_array", "predict_cases", "prepare_members", "target_spacing_for",
           "window_progress"]

log = logging.getLogger(__name__)
PREDICT_SPACINGS = ("plan", "native")  # --spacing words; train also has auto
PROGRESS_MIN_WINDOWS = 32  # a case with fewer windows gets no window progress bar


@dataclass
class PredictReport:
    """What a prediction run did."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def check_output_folder(out_dir: Path, cases: Sequence[Case]) -> None:
    """Refuse an output folder that holds input files, or that is an input case folder (a DICOM
    series) or inside one: inputs are never overwritten or added to."""
    out = out_dir.resolve()
    for case in cases:
        for path in (*case.images, *([case.label] if case.label else [])):
            path = path.resolve()
            if path.is_dir() and (out == path or path in out.parents):
                raise InputError(out_dir, f"is the input case folder {path} or inside it; "
                                 "choose a folder outside the inputs")
            if path.parent == out:
                raise InputError(out_dir, "the output folder holds input files; choose another "
                                 "folder so that no input can be overwritten")


def _device_of(model: Any) -> torch.device:
    """Where a PyTorch model's weights live; exported models (no parameters) take CPU input."""
    first = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def _roi(model: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (model.fixed_input_size or model.config.roi_size))


def _batch(model: Any, options: PredictOptions) -> tuple[int, bool]:
    """Windows per call, and whether that number is fixed (an export with a static batch)."""
    fixed = getattr(model, "max_batch_size", None)  # only exports define it
    return (int(fixed), True) if fixed else (options.batch_size, False)


def _as_list(models: LoadedModel | Sequence[LoadedModel]) -> list[LoadedModel]:
    return [models] if isinstance(models, LoadedModel) else list(models)


def prepare_members(models: LoadedModel | Sequence[LoadedModel],
                    options: PredictOptions) -> list[LoadedModel]:
    """The members as ``options`` predicts them: with ``options.compile`` each model
    ``torch.compile``-d once (attributes such as ``config`` still read through to the model; one
    graph per window batch shape, compiled on its first call).

    Raises:
        InputError: ``compile`` for an exported model.
    """
    members = _as_list(models)
    if not options.compile:
        return members
    if not all(isinstance(m.model, torch.nn.Module) for m in members):
        raise InputError("--compile", "applies to checkpoints; an exported model runs in its "
                         "own runtime")
    return [dataclasses.replace(m, model=maybe_compile(m.model, True)) for m in members]


def _normalised(members: Sequence[LoadedModel], image: np.ndarray) -> list[torch.Tensor]:
    """``(C, *S)`` per member, one copy per distinct normalisation plan."""
    copies: dict[str, torch.Tensor] = {}
    out = []
    for loaded in members:
        key = repr(loaded.dataset["normalization"])
        if key not in copies:
            plan = NormalizationPlan.from_dict(loaded.dataset["normalization"])
            copies[key] = torch.from_numpy(normalize(image, plan))
        out.append(copies[key])
    return out


def target_spacing_for(models: LoadedModel | Sequence[LoadedModel],
                       option: str = "plan") -> tuple[float, ...] | None:
    """The spacing to predict at for ``--spacing``: ``plan`` (the one the models were trained
    at, ``None`` if they were trained on native spacing), ``native`` (``None``) or ``X,Y,Z``.

    Raises:
        InputError: a malformed ``--spacing``, or ensemble members trained at different
            spacings (with ``plan``).
    """
    members = _as_list(models)
    choice = parse_spacing(option, members[0].model.spatial_dims, PREDICT_SPACINGS)
    if isinstance(choice, tuple):
        return choice
    if choice == "native":
        return None
    stored = {tuple(float(v) for v in m.dataset.get("target_spacing") or ()) for m in members}
    if len(stored) > 1:
        raise InputError("--model", f"the models were trained at different spacings "
                         f"({', '.join(str(s or 'native') for s in sorted(stored))}); predict "
                         "with --spacing native or X,Y,Z")
    spacing = stored.pop()
    return spacing or None


def _grid(shape: tuple[int, ...], image_spacing: Sequence[float] | None,
          target: Sequence[float] | None) -> tuple[int, ...]:
    """The spatial shape the network predicts on: ``shape`` at ``target`` spacing."""
    if image_spacing is None or target is None:
        return shape
    return new_shape_for(shape, image_spacing, target)


def _resampling(options: PredictOptions) -> PredictOptions:
    """Options of a resampled case: the probabilities are kept (float32) to go back."""
    return replace(options, save_probabilities=True, probabilities_dtype="float32")


def _window_devices(members: Sequence[LoadedModel]) -> torch.device:
    return _device_of(members[0].model)


def _accumulate_device(options: PredictOptions, estimate: CaseEstimate,
                       window_device: torch.device) -> torch.device:
    if options.accumulate_device != "auto":
        return torch.device(options.accumulate_device)
    free = available_memory(window_device) if window_device.type == "cuda" else None
    return choose_accumulate_device(window_device, estimate.accumulators_bytes,
                                    estimate.windows_bytes, free)


def estimate_for(members: Sequence[LoadedModel], shape: Sequence[int], options: PredictOptions,
                 windows: Sequence[int] | None = None) -> CaseEstimate:
    """The :class:`CaseEstimate` of predicting a case of spatial ``shape`` with ``members``."""
    if windows is None:
        windows = [window_bytes(m.model, _roi(m.model), _batch(m.model, options)[0],
                                _device_of(m.model)) for m in members]
    plans = len({repr(m.dataset["normalization"]) for m in members})
    model = members[0].model
    return estimate_case(shape, model.in_channels, model.num_classes,
                         [_roi(m.model) for m in members], windows, plans=plans, tta=options.tta,
                         stitching=options.stitching,
                         accumulate_bytes=torch.finfo(options.accumulate_torch_dtype).bits // 8,
                         probabilities_bytes=(np.dtype(options.probabilities_dtype).itemsize
                                              if options.save_probabilities else None))


def window_progress(total: int, enabled: bool) -> tuple[Callable[[int], None] | None,
                                                       Callable[[], None]]:
    """A tqdm bar over ``total`` windows (``None`` when disabled or the case is small)."""
    if not enabled or total < PROGRESS_MIN_WINDOWS:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="windows", unit="win", leave=False)
    return bar.update, bar.close


def _predict_full(members: Sequence[LoadedModel], images: Sequence[torch.Tensor],
                  options: PredictOptions, accumulate: torch.device) -> torch.Tensor:
    """Today's path: each member's whole ``(1, K, *S)`` float32 probabilities (MONAI)."""
    total: torch.Tensor | None = None
    for loaded, image in zip(members, images, strict=True):
        batch, _ = _batch(loaded.model, options)
        x = image[None].to(_device_of(loaded.model))  # (1, C, *S)
        probs = predict_probabilities(loaded.model, x, _roi(loaded.model), overlap=options.overlap,
                                      tta=options.tta, sw_batch_size=batch,
                                      accumulate_device=accumulate)
        total = probs if total is None else total.add_(probs)
    assert total is not None
    return total / len(members)


def predict_array(models: LoadedModel | Sequence[LoadedModel], image: np.ndarray,
                  options: PredictOptions | None = None, estimate: CaseEstimate | None = None,
                  where: str = "image", image_spacing: Sequence[float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels ``(*S)`` (and, if ``options.save_probabilities``, probabilities ``(K, *S)``) for a
    raw image ``(C, *S)``, normalised here with each member's stored plan.

    Each member is a PyTorch model or a :class:`medtoken.export.ExportedModel`; an export with
    a fixed batch axis gets exactly ``max_batch_size`` windows per call. Given the image's own
    ``image_spacing`` and a target spacing (:func:`target_spacing_for` of
    ``options.target_spacing``), the network sees the image resampled to it, and labels and
    probabilities come back in the image's shape; ``estimate`` is then that of the resampled grid.

    Raises:
        InputError: at ``where``, when the estimated peak does not fit (unless
            ``options.force_memory``).
    """
    members = _as_list(models)
    options = options or PredictOptions()
    shape = tuple(image.shape[1:])
    target = (target_spacing_for(members, options.target_spacing) if image_spacing is not None
              else None)
    grid = _grid(shape, image_spacing, target)
    normalised = _normalised(members, image)
    if grid == shape:  # native, or already at the target spacing: not resampled at all
        return _predict_grid(members, normalised, grid, options, estimate, where)
    assert image_spacing is not None and target is not None
    resampled = {id(x): torch.from_numpy(resample_image(x.numpy(), image_spacing, target))
                 for x in normalised}  # (C, *S') once per normalisation plan
    images = [resampled[id(x)] for x in normalised]
    _, probs = _predict_grid(members, images, grid, _resampling(options), estimate, where)
    assert probs is not None
    back = resample_probabilities(probs, shape, target, image_spacing)  # (K, *S)
    labels = back.argmax(0).astype(label_dtype(members[0].model.num_classes))
    return labels, back.astype(options.probabilities_dtype) if options.save_probabilities \
        else None


def _predict_grid(members: Sequence[LoadedModel], images: Sequence[torch.Tensor],
                  shape: tuple[int, ...], options: PredictOptions,
                  estimate: CaseEstimate | None, where: str
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_array` on the grid the network sees: ``images`` ``(C, *shape)``."""
    window_device = _window_devices(members)
    estimate = estimate or estimate_for(members, shape, options)
    accumulate = _accumulate_device(options, estimate, window_device)
    if not options.force_memory:
        check_case_fits(estimate, where, window_device, accumulate)
    k = members[0].model.num_classes
    if options.stitching == "full":
        probs = _predict_full(members, images, options, accumulate)[0]  # (K, *S)
        labels = probs.argmax(0).cpu().numpy().astype(label_dtype(k))
        kept = probs.cpu().numpy().astype(options.probabilities_dtype) \
            if options.save_probabilities else None
        return labels, kept
    kept = np.zeros((k, *shape), options.probabilities_dtype) if options.save_probabilities \
        else None
    slab_members = []
    for loaded, normalised in zip(members, images, strict=True):
        batch, fixed = _batch(loaded.model, options)
        slab_members.append(Member(loaded.model, normalised, _roi(loaded.model), batch, fixed,
                                   _device_of(loaded.model)))
    total = sum(count_windows(shape, m.roi_size, options.overlap) for m in slab_members)
    update, close = window_progress(total * (2 ** len(shape) if options.tta else 1),
                                    options.progress)
    try:
        labels = predict_slabwise(slab_members, k, overlap=options.overlap, tta=options.tta,
                                  accumulate_dtype=options.accumulate_torch_dtype,
                                  accumulate_device=accumulate, probabilities=kept,
                                  progress=update)
    finally:
        close()
    return labels, kept


def check_postprocessing(path: str | Path, members: Sequence[LoadedModel]) -> PostprocessingPlan:
    """Read a ``postprocessing.json`` and refuse one made for other labels than the model's.

    Raises:
        InputError: at ``path``: unreadable, or for other labels.
    """
    plan = read_plan(path)
    labels = members[0].dataset.get("labels") or {str(k): k for k in
                                                   range(members[0].model.num_classes)}
    plan.check_labels([int(k) for k in labels], path)
    return plan


def _output_path(out_dir: Path, case: Case, file_ending: str, spatial_dims: int) -> Path:
    return out_dir / f"{case.case_id}{'.png' if spatial_dims == 2 else file_ending}"


def save_probabilities(probabilities: np.ndarray, path: Path) -> None:
    """Write ``probabilities`` ``(K, *S)`` to ``path`` (``.npz``, key ``probabilities``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, probabilities=probabilities)


def _check_case(members: Sequence[LoadedModel], case: Case, image: np.ndarray,
                meta: ImageMeta) -> None:
    model = members[0].model
    if image.shape[0] != model.in_channels:
        raise InputError(case.images[0], f"has {image.shape[0]} channel(s); the model "
                         f"expects {model.in_channels}")
    if meta.spatial_dims != model.spatial_dims:
        raise InputError(case.images[0], f"is {meta.spatial_dims}D; the model is "
                         f"{model.spatial_dims}D")


def _write(labels: np.ndarray, probabilities: np.ndarray | None, meta: ImageMeta,
           target: Path, npz: Path) -> None:
    """Both outputs or neither: the probabilities first, removed if the labels fail."""
    if probabilities is not None:
        save_probabilities(probabilities, npz)
    try:
        write_label(labels, meta, target)
    except BaseException:
        if probabilities is not None:
            npz.unlink(missing_ok=True)
        raise


def predict_cases(models: LoadedModel | Sequence[LoadedModel], cases: Sequence[Case],
                  out_dir: str | Path, options: PredictOptions | None = None,
                  skip_existing: bool = False,
                  postprocess: PostprocessingPlan | None = None) -> PredictReport:
    """Predict every case into ``out_dir``; unreadable or too large cases are reported, not
    fatal. ``options.progress`` shows a bar over cases (and over windows of a large case).

    Args:
        postprocess: a plan applied to the labels before they are written (the probabilities
            are kept as predicted, as nnU-Net does); check it with :func:`check_postprocessing`.
    """
    options = options or PredictOptions()
    members = prepare_members(models, options)
    out = Path(out_dir)
    check_output_folder(out, cases)
    target_spacing = target_spacing_for(members, options.target_spacing)  # checked before mkdir
    out.mkdir(parents=True, exist_ok=True)
    report = PredictReport()
    windows: list[int] | None = None  # probed once, on the first case
    iterator: Sequence[Case] = cases
    if options.progress and len(cases) > 1:
        from tqdm import tqdm

        iterator = tqdm(cases, desc="predict", unit="case")
    for case in iterator:
        try:
            image, meta = read_image(case.images)
            _check_case(members, case, image, meta)
            target = _output_path(out, case, meta.file_ending, meta.spatial_dims)
            npz = out / f"{case.case_id}.npz"
            if skip_existing and target.exists() and (npz.exists()
                                                      or not options.save_probabilities):
                report.skipped.append(target)
                continue
            if windows is None:
                windows = [window_bytes(m.model, _roi(m.model), _batch(m.model, options)[0],
                                        _device_of(m.model)) for m in members]
            grid = _grid(meta.spatial_shape, meta.spacing, target_spacing)
            estimate = estimate_for(members, grid, options if grid == meta.spatial_shape
                                    else _resampling(options), windows)
            labels, probs = predict_array(members, image, options, estimate, str(case.images[0]),
                                          image_spacing=meta.spacing)
            del image
            if postprocess is not None:
                labels = apply_postprocessing(labels, postprocess)
            _write(labels, probs, meta, target, npz)
            report.written.append(target)
        except InputError as err:
            log.error("%s", err)
            report.failed.append((case.case_id, str(err)))
    return report
