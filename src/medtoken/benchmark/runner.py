"""Benchmark several models side by side: memory in isolation, then interleaved timing.

For each benchmark point (one per ``--sweep`` value, or a single one) the runner

1. measures each model's peak memory on its own (see :mod:`medtoken.benchmark.memory`);
2. builds all the point's models, counts their FLOPs and token counts;
3. times them interleaved (:func:`~medtoken.utils.timing.time_interleaved`);
4. writes one record per model; ratios to the baseline are added at the end.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from medtoken.benchmark.complexity import (
    FLOP_COUNTER,
    count_flops,
    count_parameters,
    token_info,
)
from medtoken.benchmark.memory import MEMORY_METHODS, MemoryJob, measure_peak_memory
from medtoken.benchmark.profile import profile_children
from medtoken.benchmark.report import add_baseline_ratios, environment
from medtoken.benchmark.spec import (
    BATCH_SIZE_KEY,
    ROI_SIZE_KEY,
    Sweep,
    check_input_size,
    resolve_config,
)
from medtoken.benchmark.volume import VolumeCase, VolumeJob
from medtoken.benchmark.volume_runner import cases_for, summarize_runs, time_volume_runs
from medtoken.benchmark.workload import (
    MODES,
    amp_dtype,
    autocast,
    build_workload,
    make_batch,
)
from medtoken.config import ModelSpec, to_dict
from medtoken.inference.options import STITCHINGS
from medtoken.registry import build_model
from medtoken.utils.device import resolve_device
from medtoken.utils.errors import InputError
from medtoken.utils.timing import summarize, time_interleaved

__all__ = ["AMP_CHOICES", "COMPILE_CHOICES", "BenchmarkSettings", "run_benchmark"]

COMPILE_CHOICES = ("off", "on", "both")
AMP_CHOICES = COMPILE_CHOICES  # off, on, or both = each model in float32 and under autocast
_VARIANTS = {"off": (False,), "on": (True,), "both": (False, True)}


@dataclass(frozen=True)
class BenchmarkSettings:
    """How to benchmark (shared by all models).

    Attributes:
        input_size: ``(B, C, D, H, W)`` or ``(B, C, H, W)``; C and the spatial size override the
            models' ``in_channels`` and ``roi_size``. In volume mode B is the sliding-window
            batch and the spatial size the window.
        repeats: timed steps per model (volume mode: cases, spread over the dataset).
        warmup: untimed steps per model before timing.
        threads: ``torch.set_num_threads`` for the run (``None``: leave torch's default).
        data: the dataset of volume mode.
        volume_size: volume mode on generated CT-like cases of this spatial size instead.
        spacing: their voxel spacing in mm (recorded; prediction runs on the voxel grid).
        stitching: volume mode: ``slab`` and/or ``full`` (each model runs with each, in one
            interleaved run; see :class:`~medtoken.inference.options.PredictOptions`).
        accumulate_dtype: slab stitching's accumulation dtype (``None``: predict's default).
        overlap: sliding-window overlap of volume mode.
        memory: ``isolated``, ``inprocess`` or ``off`` (see :mod:`medtoken.benchmark.memory`).
        profile: forwards per model of a per-submodule time breakdown after the timed steps
            (0: none; see :mod:`medtoken.benchmark.profile`).
        compile: ``off``, ``on`` (every model ``torch.compile``-d) or ``both`` (each model
            eager and compiled, timed interleaved); the compiling first step is timed apart
            (``compile_s``), never inside the repeats.
        amp: ``off``, ``on`` (autocast: bfloat16 on CPU, float16 on CUDA) or ``both`` (each
            model in float32 and under autocast, timed interleaved).
    """

    input_size: tuple[int, ...]
    mode: str = "infer"
    repeats: int = 20
    warmup: int = 5
    device: str = "cpu"
    amp: str = "off"
    threads: int | None = None
    data: str | None = None
    volume_size: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    stitching: tuple[str, ...] = ("slab",)
    accumulate_dtype: str | None = None
    overlap: float = 0.5
    memory: str = "isolated"
    profile: int = 0
    compile: str = "off"

    def __post_init__(self) -> None:
        if len(self.input_size) not in (4, 5) or min(self.input_size) < 1:
            raise ValueError(f"input_size must be 4 or 5 positive ints, got {self.input_size}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, "
                             f"{self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.mode == "volume" and bool(self.data) == (self.volume_size is not None):
            raise ValueError("volume mode needs either data (a dataset folder) or volume_size")
        if not self.stitching or any(s not in STITCHINGS for s in self.stitching):
            raise ValueError(f"stitching must be among {STITCHINGS}, got {self.stitching}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.profile < 0:
            raise ValueError(f"profile must be >= 0, got {self.profile}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {self.compile!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.memory not in MEMORY_METHODS:
            raise ValueError(f"memory must be one of {MEMORY_METHODS}, got {self.memory!r}")


@dataclass(frozen=True)
class _Entry:
    """One model at one benchmark point."""

    spec: ModelSpec  # with the sweep override applied (if it is a model key)
    base_spec: ModelSpec
    input_size: tuple[int, ...]
    is_baseline: bool
    point: int
    sweep_value: Any = None
    sweep_applied: bool = False
    compiled: bool = False
    amp: bool = False

    @property
    def variant(self) -> str:
        """`` [compiled]`` and/or `` [amp]``, as keys, labels and records mark the variant."""
        return (" [compiled]" if self.compiled else "") + (" [amp]" if self.amp else "")

    @property
    def key(self) -> str:
        """Unique within a point: the spec and its variant."""
        return self.spec.text + self.variant


def _plan(models: Sequence[ModelSpec], baseline: ModelSpec | None, input_size: tuple[int, ...],
          sweep: Sweep | None, compile: str = "off", amp: str = "off") -> list[list[_Entry]]:
    """Benchmark points, each a list of entries; the baseline is measured at every point
    (eager and compiled entries of each model side by side with ``compile='both'``, float32
    and autocast ones with ``amp='both'``; the baseline's first variant is the baseline)."""
    unique = {s.text: s for s in [*models, *([baseline] if baseline is not None else [])]}
    specs, model_texts = list(unique.values()), {s.text for s in models}
    points: list[list[_Entry]] = []
    for point, value in enumerate(sweep.values if sweep else [None]):
        group: list[_Entry] = []
        for spec in specs:
            is_baseline = baseline is not None and spec.text == baseline.text
            entry = _Entry(spec, spec, input_size, is_baseline, point, value)
            if sweep is not None and sweep.key == BATCH_SIZE_KEY:
                entry = replace(entry, input_size=(int(value), *input_size[1:]),
                                sweep_applied=True)
            elif sweep is not None and sweep.key == ROI_SIZE_KEY:
                if len(value) != len(input_size) - 2:
                    raise InputError("--sweep", f"roi_size {list(value)} has {len(value)} "
                                     f"dims but --input-size has {len(input_size) - 2}")
                entry = replace(entry, input_size=(*input_size[:2], *value), sweep_applied=True)
            elif sweep is not None and spec.text in model_texts:
                entry = replace(entry, spec=spec.with_override(sweep.key, value),
                                sweep_applied=True)
            variants = [(c, a) for c in _VARIANTS[compile] for a in _VARIANTS[amp]]
            group.extend(replace(entry, compiled=c, amp=a,
                                 is_baseline=is_baseline and (c, a) == variants[0])
                         for c, a in variants)
        points.append(group)
    return points


def _job(config: Any, entry: _Entry, settings: BenchmarkSettings,
         device: torch.device) -> MemoryJob:
    return MemoryJob(family=type(config).family, config=to_dict(config),
                     mode=settings.mode, input_size=list(entry.input_size), device=str(device),
                     amp=entry.amp, threads=settings.threads, compile=entry.compiled)


def _validate(entry: _Entry) -> Any:
    """The entry's config; unknown keys and (where the model builds on ``meta``) input sizes the
    model does not accept raise :class:`InputError` before any time is spent."""
    config = resolve_config(entry.spec, entry.input_size)
    try:
        with torch.device("meta"):
            model = build_model(config)
    except Exception:  # a model that cannot be built on meta is checked when it is built for real
        return config
    check_input_size(model, entry.spec, entry.input_size)
    return config


def _complexity(model: Any, entry: _Entry, device: torch.device) -> dict[str, Any]:
    """Parameters, eval-forward FLOPs of the input batch, token counts from ``info``."""
    x, _ = make_batch(entry.input_size, model.num_classes, device)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out: list[Any] = []
        flops = count_flops(lambda: out.append(model.forward_with_aux(x)))
    model.train(was_training)
    tokens = token_info(out[0].info)
    return {"params": count_parameters(model), "gflops": flops / 1e9,
            "tokens": tokens or None}


def _profile(model: Any, entry: _Entry, settings: BenchmarkSettings,
             device: torch.device) -> dict[str, float]:
    """Forward ms per top-level submodule: eval forwards (infer and volume mode, one window) or
    the forward part of a training step (train mode)."""
    x, y = make_batch(entry.input_size, model.num_classes, device)
    training = settings.mode == "train"
    model.train(training)

    def forward() -> None:
        with torch.inference_mode(not training), autocast(device, entry.amp):
            model.forward_with_aux(x, y if training else None)

    return profile_children(model, forward, device, settings.profile)


def _describe(entry: _Entry, settings: BenchmarkSettings, device: torch.device,
              sweep: Sweep | None) -> dict[str, Any]:
    label = entry.spec.text if sweep is None else f"{entry.base_spec.text} [{sweep.key}=" \
        f"{entry.sweep_value}]"
    label += entry.variant
    record: dict[str, Any] = {
        "model": entry.spec.preset, "spec": entry.spec.text, "label": label,
        "base_spec": entry.base_spec.text, "is_baseline": entry.is_baseline,
        "mode": settings.mode, "input_size": list(entry.input_size),
        "batch_size": entry.input_size[0],
        "dtype": f"{str(amp_dtype(device)).removeprefix('torch.')} autocast" if entry.amp
        else "float32", "amp": entry.amp, "threads": torch.get_num_threads(),
        "warmup": settings.warmup, "repeats": settings.repeats, "point": entry.point,
        "sweep_key": sweep.key if sweep else None, "sweep_value": entry.sweep_value,
        "sweep_applied": entry.sweep_applied, "compiled": entry.compiled,
        "variant": entry.variant,
    }
    if settings.mode == "volume":
        record.update({"data": settings.data, "volume_size": settings.volume_size,
                       "spacing": settings.spacing, "overlap": settings.overlap,
                       "sw_batch_size": entry.input_size[0],
                       "normalization": "z-score per case" if settings.data else
                       "CT statistics (clip -1000..1000 HU, mean -300, std 450)"})
    return record


def _run_point(group: list[_Entry], configs: dict[str, Any], settings: BenchmarkSettings,
               device: torch.device, sweep: Sweep | None) -> list[dict[str, Any]]:
    """Memory, complexity and interleaved timing of one point's models (configs by spec)."""
    records: dict[str, dict[str, Any]] = {}
    for entry in group:  # memory first, one model at a time, before any model is resident
        config = configs[entry.spec.text]
        mem, method = measure_peak_memory(_job(config, entry, settings, device),
                                          settings.memory)
        records[entry.key] = {**_describe(entry, settings, device, sweep),
                              "peak_mem_mb": mem, "memory_method": method,
                              "family": type(config).family, "config": to_dict(config)}
    steps, models = {}, {}
    for entry in group:
        model = build_model(configs[entry.spec.text]).to(device)
        models[entry.key] = model
        check_input_size(model, entry.spec, entry.input_size)
        records[entry.key].update(_complexity(model, entry, device))
        work = build_workload(model, settings.mode, entry.input_size, device, entry.amp,
                              None, settings.overlap, entry.compiled)
        steps[entry.key] = work.step
        records[entry.key].update(items_per_step=work.items_per_step, compile_s=work.compile_s)
    times = time_interleaved(steps, settings.warmup, settings.repeats, device)
    if settings.profile:
        for entry in group:
            records[entry.key]["module_ms"] = _profile(models[entry.key], entry, settings,
                                                       device)
    del steps, model, work, models
    gc.collect()
    for name, record in records.items():
        latency = summarize(times[name])
        record["latency_ms"] = latency
        record["throughput_per_s"] = record["items_per_step"] / (latency["median"] / 1e3)
    return list(records.values())


def _volume_runs(group: list[_Entry], settings: BenchmarkSettings
                 ) -> list[tuple[str, _Entry, str, bool]]:
    """(name, entry, stitching, is_baseline) for every model and stitching of a point; with
    several stitchings and no baseline, the first model's ``full`` (or first) run is it."""
    runs = []
    several = len(settings.stitching) > 1
    reference = "full" if "full" in settings.stitching else settings.stitching[0]
    has_baseline = any(e.is_baseline for e in group)
    for index, entry in enumerate(group):
        for stitching in settings.stitching:
            chosen = entry.is_baseline if has_baseline else (several and index == 0)
            runs.append((f"{entry.key}|{stitching}", entry, stitching,
                         chosen and stitching == reference))
    return runs


def _run_volume_point(group: list[_Entry], configs: dict[str, Any],
                      settings: BenchmarkSettings, device: torch.device,
                      cases: list[VolumeCase], sweep: Sweep | None) -> list[dict[str, Any]]:
    """Whole cases, one process per (model, stitching, case), interleaved case by case."""
    records: dict[str, dict[str, Any]] = {}
    jobs: dict[str, VolumeJob] = {}
    for name, entry, stitching, is_baseline in _volume_runs(group, settings):
        config = configs[entry.spec.text]
        described = _describe(replace(entry, is_baseline=is_baseline), settings, device, sweep)
        if len(settings.stitching) > 1:
            described["label"] += f" [{stitching}]"
        model = build_model(config).to(device)
        check_input_size(model, entry.spec, entry.input_size)
        records[name] = {**described, "stitching": stitching, "family": type(config).family,
                         "config": to_dict(config), **_complexity(model, entry, device),
                         "items_per_step": 1,
                         "memory_method": "VmHWM of the run's own process; area under VmRSS "
                         "sampled every 50 ms by the parent"}
        jobs[name] = VolumeJob(family=type(config).family, config=to_dict(config), case={},
                               batch_size=int(entry.input_size[0]),
                               spatial_dims=len(entry.input_size) - 2, device=str(device),
                               stitching=stitching, accumulate_dtype=settings.accumulate_dtype
                               if stitching == "slab" else None,
                               overlap=settings.overlap, amp=entry.amp,
                               threads=settings.threads, compile=entry.compiled)
        del model
    gc.collect()
    baseline = next((n for n, r in records.items() if r["is_baseline"]), None)
    compare = baseline if len(settings.stitching) > 1 else None
    results = time_volume_runs(jobs, cases, settings.warmup, compare_to=compare)
    for name, record in records.items():
        same_model = compare and record["base_spec"] == records[compare]["base_spec"]
        runs = results[name] if same_model else \
            [{k: v for k, v in r.items() if k != "labels_agreement"} for r in results[name]]
        record.update(summarize_runs(runs, record["input_size"][2:], settings.overlap))
        record["throughput_per_s"] = 1e3 / record["latency_ms"]["median"]
    return list(records.values())


def run_benchmark(models: Sequence[ModelSpec], settings: BenchmarkSettings,
                  baseline: ModelSpec | None = None,
                  sweep: Sweep | None = None) -> list[dict[str, Any]]:
    """Benchmark ``models`` (and ``baseline``) under ``settings``; one record per model and point.

    Returns:
        JSON-ready records: ``model`` (preset), ``spec``, ``label``, ``mode``, ``input_size``,
        ``batch_size``, ``latency_ms`` (``median``, ``min``, ``max``, ``q1``, ``q3``, ``n``),
        ``throughput_per_s``, ``peak_mem_mb`` and ``memory_method``, ``gflops`` and
        ``flop_counter``, ``params``, ``tokens``, ``speedup_vs_baseline``,
        ``memory_vs_baseline``, the settings (``dtype``, ``amp``, ``threads``, ``warmup``,
        ``repeats``, sweep and volume-mode fields), ``compiled`` and ``compile_s`` (seconds of
        the compiling first step, ``None`` when eager), the resolved ``config`` and the machine
        (:func:`medtoken.benchmark.report.environment`).

    Raises:
        InputError: an unknown preset or key, an input size a model does not accept, a missing
            CUDA device, or a dataset that does not match.
    """
    device = resolve_device(settings.device)
    previous_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    gc.collect()
    gc.freeze()  # objects alive now are never garbage: the collections between steps stay cheap
    try:
        env = environment(device)
        cases = None
        if settings.mode == "volume":
            cases = cases_for(settings.data, settings.volume_size, settings.spacing,
                              settings.repeats, settings.input_size[1],
                              len(settings.input_size) - 2)
        groups = _plan(models, baseline, settings.input_size, sweep, settings.compile,
                       settings.amp)
        # every spec of every point is checked before any time is spent
        configs = [{entry.spec.text: _validate(entry) for entry in group} for group in groups]
        records = []
        for group, group_configs in zip(groups, configs, strict=True):
            if cases is not None:
                point = _run_volume_point(group, group_configs, settings, device, cases, sweep)
            else:
                point = _run_point(group, group_configs, settings, device, sweep)
            for record in point:
                record.update(env)
                record["flop_counter"] = FLOP_COUNTER
                if cases is not None:
                    record["num_cases"] = len(cases)
                    record["case_ids"] = [c.case_id for c in cases]
                records.append(record)
    finally:
        gc.unfreeze()
        torch.set_num_threads(previous_threads)
    add_baseline_ratios(records)
    return records
