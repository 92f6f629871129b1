#!/usr/bin/env bash
# Standard speed/memory comparisons on a GPU, with AMP. Every run is one `medtoken benchmark`
# call writing results.json/.csv/.md and chart.png into its own folder under $OUT.
#
#   scripts/gpu_benchmark.sh                 # all comparisons, into benchmark-gpu/
#   OUT=/tmp/bm REPEATS=30 scripts/gpu_benchmark.sh scd tmunet
#   DRY_RUN=1 scripts/gpu_benchmark.sh       # print the commands only
#
# Comparisons (arguments select a subset; default: all):
#   scd      scd_btcv vs unetr_btcv (its dense twin, the baseline) vs MONAI UNETR, 1x1x96^3,
#            infer and train (MONAI UNETR with the same 14 classes)
#   tmunet   tmunet_b with chunkwise vs parallel mLSTM, 1x3x512x512, infer and train
#   tokenseg tokenseg3d and MONAI's DynUNet vs the nnU-Net-planned 3D U-Net, 1x1x64x160x160,
#            infer and train
#
# Environment: OUT (default benchmark-gpu), DEVICE (cuda), REPEATS (50), WARMUP (10),
# MEDTOKEN (the command; default .venv/bin/medtoken if present, else medtoken),
# EXTRA (more benchmark options, e.g. "--threads 8"), DRY_RUN=1 to only print the commands.
set -euo pipefail

OUT=${OUT:-benchmark-gpu}
DEVICE=${DEVICE:-cuda}
REPEATS=${REPEATS:-50}
WARMUP=${WARMUP:-10}
EXTRA=${EXTRA:-}
if [[ -z "${MEDTOKEN:-}" ]]; then
    if [[ -x .venv/bin/medtoken ]]; then MEDTOKEN=.venv/bin/medtoken; else MEDTOKEN=medtoken; fi
fi

bench() {  # bench NAME MODE MODELS BASELINE INPUT_SIZE
    local name=$1 mode=$2 models=$3 baseline=$4 size=$5
    # shellcheck disable=SC2086  # EXTRA is a list of options
    local cmd=("$MEDTOKEN" benchmark --models "$models" --baseline "$baseline"
               --input-size "$size" --mode "$mode" --device "$DEVICE" --amp
               --repeats "$REPEATS" --warmup "$WARMUP" --out "$OUT/$name-$mode" $EXTRA)
    echo "+ ${cmd[*]}" >&2
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        "${cmd[@]}"
    fi
}

run_scd() {
    for mode in infer train; do
        bench scd "$mode" "scd_btcv,monai_unetr3d:num_classes=14" unetr_btcv 1,1,96,96,96
    done
}

run_tmunet() {
    for mode in infer train; do
        bench tmunet "$mode" "tmunet_b:mstm.mlstm_mode=parallel" \
            "tmunet_b:mstm.mlstm_mode=chunkwise" 1,3,512,512
    done
}

# nnU-Net's 3d_fullres network as its planner builds it for a 64x160x160 patch at 1 mm
# (needs nnU-Net's network package, dynamic_network_architectures: `make setup` installs it)
# (planning.planner: 6 stages, 32-320 features, last stride 1,2,2), 3 classes like tokenseg3d
NNUNET_64x160x160='nnunet3d:num_classes=3,roi_size=[64,160,160],n_stages=6,features_per_stage=[32,64,128,256,320,320],kernel_sizes=[[3,3,3],[3,3,3],[3,3,3],[3,3,3],[3,3,3],[3,3,3]],strides=[[1,1,1],[2,2,2],[2,2,2],[2,2,2],[2,2,2],[1,2,2]],n_conv_per_stage=[2,2,2,2,2,2],n_conv_per_stage_decoder=[2,2,2,2,2]'

run_tokenseg() {
    for mode in infer train; do
        bench tokenseg "$mode" "tokenseg3d,dynunet3d" "$NNUNET_64x160x160" 1,1,64,160,160
    done
}

selected=("$@")
if [[ ${#selected[@]} -eq 0 ]]; then selected=(scd tmunet tokenseg); fi
for comparison in "${selected[@]}"; do
    case "$comparison" in
        scd|tmunet|tokenseg) "run_$comparison" ;;
        *) echo "unknown comparison '$comparison' (use scd, tmunet, tokenseg)" >&2; exit 2 ;;
    esac
done
if [[ "${DRY_RUN:-0}" != 1 ]]; then
    echo "results under $OUT/ (results.md in each folder)" >&2
fi
