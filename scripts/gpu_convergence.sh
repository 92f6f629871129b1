#!/usr/bin/env bash
# Issue 15's convergence pairs on one GPU, all ten side by side, in one call of at most 9 minutes
# (the device tool's machine; docs/benchmarks.md says what its numbers mean next to the CPU runs).
#
#   scripts/gpu_convergence.sh pack     # here, with the package registry: .device/ = the wheels the
#                                       # GPU image lacks + the two datasets (~45 MB, git-ignored)
#   scripts/gpu_convergence.sh run [NAME...]   # there: device run with carry [".device"]; NAMEs
#                                       # (e.g. busi_unet2d) select runs from PAIRS below
#   DRY_RUN=1 scripts/gpu_convergence.sh run      # print the commands only
#   scripts/gpu_convergence.sh report   # results.md and runs.tgz again from the run folders
#
# Each pair trains on the schedule its CPU run used (max steps) under bfloat16 autocast, capped
# by MINUTES of wall time (the schedule anneals over whichever budget comes first, so a capped run
# still ends at the low learning rate), then validates fold 0 as every train does. Results:
# $OUT/results.md (Dice, HD95, NSD, steps, seconds per run), $OUT/gpu.txt, and $OUT/runs.tgz
# (config.yaml, log.csv, validation/summary.json and the log of every run; no checkpoints).
#
# Environment: MINUTES (4: the training cap of each run, whole minutes; each run is killed
# 150 s after it, so that the report is always written), OUT ($OUT or gpu-convergence), DEVICE
# (cuda), PY (python3), DATA (.device/data), RUNS (/tmp/gpu-convergence), DRY_RUN=1.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-.device/data}
MINUTES=${MINUTES:-4}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/gpu-convergence}
OUT=${OUT:-gpu-convergence}
H=$DATA/msd_hippocampus
B=$DATA/busi256

pack() {
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)  # also in a worktree, where .git is a file
    mkdir -p "$(dirname "$exclude")"
    grep -qxF '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
    chmod -R u+w .device 2>/dev/null || true  # the data came read-only from ../shared
    rm -rf .device/wheels && mkdir -p .device/wheels .device/data
    # what the GPU image (torch, numpy, scipy, einops, yaml, matplotlib, pillow, tqdm) lacks
    "${PIP:-.venv/bin/pip}" download -q --no-deps -d .device/wheels \
        monai==1.6.1 nibabel==5.4.2 dynamic_network_architectures==0.4.4
    for d in msd_hippocampus busi256; do
        rm -rf ".device/data/$d" && cp -r --no-preserve=mode "${SHARED:-../shared/data}/$d" \
            .device/data/
    done
    du -sh .device
}

# name | data | model | options (the CPU run's schedule; docs/benchmarks.md, "Convergence")
PAIRS=(
    "hippo_scd_hippo|$H|scd_hippo|--max-steps 4000 --set train.val_every=5"
    "hippo_unetr_hippo|$H|unetr_hippo|--max-steps 4000 --set train.val_every=5"
    "hippo_tmunet3d_s|$H|tmunet3d_s|--max-steps 6000"
    "hippo_unet3d|$H|unet3d|--max-steps 6000"
    "hippo_tokenseg3d_small|$H|tokenseg3d_small|--max-steps 6000"
    "hippo_nnunet|$H|nnunet|--recipe nnunet --max-steps 4000 --set train.val_every=4"
    "busi_scd_busi|$B|scd_busi|--max-steps 10000 --set train.steps_per_epoch=100 train.val_every=5"
    "busi_unetr_busi|$B|unetr_busi|--max-steps 10000 --set train.steps_per_epoch=100 train.val_every=5"
    "busi_tmunet_s|$B|tmunet_s|--recipe tmunet --set train.val_every=6"
    "busi_unet2d|$B|unet2d|--recipe tmunet --set train.val_every=6"
)

run() {
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        mkdir -p "$OUT" "$RUNS"
        rm -rf "$RUNS"/*_*  # a rerun on a still-warm machine starts afresh
        # pure-Python wheels: unpacking them is installing them (no pip, no registry there)
        "$PY" -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1])
                  for w in sys.argv[2:]]" "$RUNS/site" .device/wheels/*.whl
        export PYTHONPATH=$PWD/src:$RUNS/site
        "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0)
                  if torch.cuda.is_available() else 'no CUDA device')" | tee "$OUT/gpu.txt"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/gpu.txt" \
            2>/dev/null || true
    fi
    local spec name data model opts
    for spec in "${PAIRS[@]}"; do
        IFS='|' read -r name data model opts <<< "$spec"
        if [[ $# -gt 0 && " $* " != *" $name "* ]]; then continue; fi
        # shellcheck disable=SC2206  # opts is a list of options
        local cmd=(timeout -s TERM "$(( ${MINUTES%.*} * 60 + 150 ))"
                   "$PY" -m medtoken train --data "$data" --model "$model" --device "$DEVICE"
                   --amp bf16 $opts --max-minutes "$MINUTES" --out "$RUNS/$name" --no-progress)
        echo "+ OMP_NUM_THREADS=1 ${cmd[*]}" >&2
        if [[ "${DRY_RUN:-0}" != 1 ]]; then
            OMP_NUM_THREADS=1 "${cmd[@]}" > "$RUNS/$name.log" 2>&1 &
        fi
    done
    if [[ "${DRY_RUN:-0}" == 1 ]]; then return; fi
    wait || true  # a failed run is reported in results.md, the others still count
    report
}

report() {  # results.md and runs.tgz from the run folders under $RUNS
    mkdir -p "$OUT"
    "$PY" - "$RUNS" "$OUT/results.md" "${PAIRS[@]}" <<'EOF'
import csv, json, sys
from pathlib import Path
runs, out, specs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
rows = ["| run | steps | seconds | Dice | HD95 | NSD |", "|---|---|---|---|---|---|"]
for spec in specs:
    name = spec.split("|")[0]
    summary, log = runs / name / "validation" / "summary.json", runs / name / "log.csv"
    if not (runs / f"{name}.log").exists():
        continue  # not selected
    if not summary.exists():
        tail = (runs / f"{name}.log").read_text().strip().splitlines()[-1:] or ["no output"]
        best = [float(r["val_mean_fg_dice"]) for r in csv.DictReader(log.open())
                if r.get("val_mean_fg_dice")] if log.exists() else []
        cell = (f"no final validation; best validation during training {max(best):.4f}"
                if best else "failed: " + tail[0][:120].replace("|", "\\|"))
        rows.append(f"| {name} | {cell} | | | | |")
        continue
    fg = json.loads(summary.read_text())["foreground_mean"]
    last = list(csv.DictReader(log.open()))[-1]
    rows.append(f"| {name} | {last['step']} | {float(last['seconds']):.0f} | {fg['Dice']:.4f} "
                f"| {fg['HD95_mm']:.1f} | {fg['NSD']:.3f} |")
out.write_text("\n".join(rows) + "\n")
print(out.read_text())
EOF
    tar czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.pt' --exclude='*.nii.gz' --exclude='*.png' --exclude=./site .
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    report) report ;;
    *) echo "usage: $0 pack|run|report (see the top of this file)" >&2; exit 2 ;;
esac
