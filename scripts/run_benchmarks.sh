#!/usr/bin/env bash
# The standard CPU comparisons behind docs/benchmarks.md. Every run is one `medtoken benchmark`
# call writing results.json/.csv/.md and chart.png into its own folder under $OUT.
#
#   scripts/run_benchmarks.sh                  # all comparisons, into benchmark-cpu/
#   OUT=/tmp/bm scripts/run_benchmarks.sh scd  # a subset: scd scd_small tmunet tokenseg volume
#   scripts/run_benchmarks.sh compile          # eager vs --compile (not in the default set)
#   DRY_RUN=1 scripts/run_benchmarks.sh        # print the commands only
#
# Environment: OUT (benchmark-cpu), REPEATS (5), WARMUP (2), THREADS (2), DATA
# (../shared/data), MEDTOKEN (default .venv/bin/medtoken), DRY_RUN=1.
# Models run interleaved (A B A B ...) so that machine drift hits all of them equally; ratios
# are the numbers to quote. For the GPU, see scripts/gpu_benchmark.sh.
set -euo pipefail

OUT=${OUT:-benchmark-cpu}
REPEATS=${REPEATS:-5}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
DATA=${DATA:-../shared/data}
if [[ -z "${MEDTOKEN:-}" ]]; then
    if [[ -x .venv/bin/medtoken ]]; then MEDTOKEN=.venv/bin/medtoken; else MEDTOKEN=medtoken; fi
fi

bench() {  # bench NAME MODE MODELS BASELINE INPUT_SIZE [EXTRA...]
    local name=$1 mode=$2 models=$3 baseline=$4 size=$5
    shift 5
    local cmd=("$MEDTOKEN" benchmark --models "$models" --baseline "$baseline"
               --input-size "$size" --mode "$mode" --device cpu --threads "$THREADS"
               --repeats "$REPEATS" --warmup "$WARMUP" --out "$OUT/$name-$mode" "$@")
    echo "+ ${cmd[*]}" >&2
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        "${cmd[@]}"
    fi
}

run_scd() {  # the paper's setting: ViT-B patch 8 at 96^3, 14 classes
    for mode in infer train; do
        bench scd "$mode" "scd_btcv,monai_unetr3d:num_classes=14" unetr_btcv 1,1,96,96,96
    done
}

run_scd_small() {  # the CPU-sized pairs trained on Hippocampus and BUSI
    for mode in infer train; do
        bench scd_hippo "$mode" scd_hippo unetr_hippo 1,1,40,56,40
        bench scd_busi "$mode" scd_busi unetr_busi 1,1,256,256
    done
}

run_tmunet() {  # chunkwise (linear) against the released parallel (quadratic) mLSTM form
    bench tmunet infer "tmunet_b:mstm.mlstm_mode=parallel" "tmunet_b" 1,3,512,512
    bench tmunet_small infer tmunet_s unet2d 1,1,256,256
}

# nnU-Net's 3d_fullres network as its planner builds it for a 64x160x160 patch at 1 mm
# (needs nnU-Net's network package, dynamic_network_architectures: `make setup` installs it)
# (planning.planner: 6 stages, 32-320 features, last stride 1,2,2), 3 classes like tokenseg3d
NNUNET_64x160x160='nnunet3d:num_classes=3,roi_size=[64,160,160],n_stages=6,features_per_stage=[32,64,128,256,320,320],kernel_sizes=[[3,3,3],[3,3,3],[3,3,3],[3,3,3],[3,3,3],[3,3,3]],strides=[[1,1,1],[2,2,2],[2,2,2],[2,2,2],[2,2,2],[1,2,2]],n_conv_per_stage=[2,2,2,2,2,2],n_conv_per_stage_decoder=[2,2,2,2,2]'

run_tokenseg() {  # against the nnU-Net-planned 3D U-Net on the reference patch (and MONAI's DynUNet)
    bench tokenseg infer "tokenseg3d,tokenseg3d_sparse,tokenseg3d_fast,dynunet3d" \
        "$NNUNET_64x160x160" 1,1,64,160,160
}

run_volume() {  # what a user waits for: whole-case sliding-window prediction on Hippocampus
    if [[ -d "$DATA/msd_hippocampus" ]]; then
        bench volume volume "scd_hippo,unetr_hippo,tmunet3d_s" unet3d 1,1,40,56,40 \
            --data "$DATA/msd_hippocampus"
    else
        echo "skipping volume: $DATA/msd_hippocampus not found" >&2
    fi
}

run_compile() {  # eager against torch.compile, side by side; cold inductor cache per run
    local mode
    for mode in infer train; do
        for spec in "2d tmunet_s,unet2d 1,1,256,256" "3d scd_hippo,unet3d 1,1,40,56,40" \
                    "tokenseg tokenseg3d_small 1,1,32,48,32"; do
            read -r name models size <<< "$spec"
            export TORCHINDUCTOR_CACHE_DIR="$OUT/inductor-$name-$mode"
            rm -rf "$TORCHINDUCTOR_CACHE_DIR"
            local cmd=("$MEDTOKEN" benchmark --models "$models" --input-size "$size"
                       --mode "$mode" --device cpu --threads 1 --repeats 10 --warmup 3
                       --compile both --memory off --out "$OUT/compile-$name-$mode")
            echo "+ TORCHINDUCTOR_CACHE_DIR=$TORCHINDUCTOR_CACHE_DIR ${cmd[*]}" >&2
            if [[ "${DRY_RUN:-0}" != 1 ]]; then "${cmd[@]}"; fi
        done
    done
    unset TORCHINDUCTOR_CACHE_DIR
}

selected=("$@")
if [[ ${#selected[@]} -eq 0 ]]; then selected=(scd scd_small tmunet tokenseg volume); fi
for comparison in "${selected[@]}"; do
    case "$comparison" in
        scd|scd_small|tmunet|tokenseg|volume|compile) "run_$comparison" ;;
        *) echo "unknown comparison '$comparison'" >&2; exit 2 ;;
    esac
done
