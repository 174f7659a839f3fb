#!/bin/bash
# The mmseg training iteration through tools/train.py and a real config (Runner, hooks, logging,
# the config's loader and data preprocessor) on one GPU, one run per variant, one after the
# other; median s/iter from mmengine's scalars.json (logged every 10 iterations, each a mean over
# the last 10; the first 5 records left out: compilation, then the batches the loader's workers
# had queued while it ran, 2 per worker, which hide a slow pipeline).
# Variants (VARIANTS, default "stacked mmseg"):
#   stacked:        the config as it is (stack_seg_collate + StackedSegDataPreProcessor);
#   mmseg:          mmseg's batches (pseudo_collate + SegDataPreProcessor);
#   compiled:       stacked, with torch.compile'd backbone blocks (compile_blocks=True);
#   compiled_fused: compiled, with the fused resize + cross-entropy loss (fast_loss='fused');
#   graphs_fused:   compiled_fused, the blocks as CUDA graphs (compile_blocks='reduce-overhead');
#   graphs_fused_no_prefetch: graphs_fused without the configs' PrefetchBatchHook;
#   graphs_fused_gpu_log: graphs_fused with mmseg's EncoderDecoder (log values read from the
#                   GPU, as mmengine does) instead of the configs' HostLogEncoderDecoder.
# (mmseg's SegDataPreProcessor cannot prefetch: the mmseg variant runs without the hook.)
#   source .device-kit/setup.sh && VARIANTS="stacked compiled" \
#       bash tools/analysis/device_train_iteration.sh [CONFIG [BATCH [ITERS [WORKERS]]]]
# Data: an ADE20K-layout toy set, 512 x 512, 150 classes (tools/data/make_toy.py), under /tmp;
# its images JPEG as ADE20K's (IMAGES=png: the toy set's lossless PNGs; on a CPU here ~1.4x the
# pipeline's time per sample).
# Writes $OUT/train_iteration_<variant>.{log,json}.
set -o pipefail
CONFIG=${1:-configs/ade20k/vit_b_p16_linear.py}
BATCH=${2:-16}
ITERS=${3:-300}
WORKERS=${4:-14}  # 12 left a 16-core H200 host slower (results/benchmark/NOTES.md, session 9)
IMAGES=${IMAGES:-jpg}
DATA=/tmp/ade_toy512_$IMAGES
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
[ -f "$DATA/meta.json" ] || python3 tools/data/make_toy.py seg --out "$DATA" --img-size 512 \
    --num-train 64 --num-val 2 --num-classes 150 --image-format "$IMAGES" || exit 1
COMMON=()
for split in train val test; do  # tools/train.py checks every split's folder
  COMMON+=("${split}_dataloader.dataset.data_root=$DATA" "${split}_dataloader.dataset.img_suffix=.$IMAGES")
done
COMMON+=("train_dataloader.batch_size=$BATCH" "train_dataloader.num_workers=$WORKERS"
        "train_cfg.max_iters=$ITERS" "train_cfg.val_begin=$((ITERS + 1))"
        "default_hooks.checkpoint.interval=$((ITERS + 1))" "default_hooks.checkpoint.save_last=False"
        "default_hooks.logger.interval=10")
GRAPHS_FUSED=("model.backbone.compile_blocks=reduce-overhead" "model.decode_head.fast_loss=fused")
for variant in ${VARIANTS:-stacked mmseg}; do
  case $variant in
    stacked) EXTRA=() ;;
    mmseg) EXTRA=("train_dataloader.collate_fn.type=pseudo_collate"
                  "model.data_preprocessor.type=SegDataPreProcessor" "custom_hooks=[]") ;;
    compiled) EXTRA=("model.backbone.compile_blocks=True") ;;
    compiled_fused) EXTRA=("model.backbone.compile_blocks=True" "model.decode_head.fast_loss=fused") ;;
    graphs_fused) EXTRA=("${GRAPHS_FUSED[@]}") ;;
    graphs_fused_no_prefetch) EXTRA=("${GRAPHS_FUSED[@]}" "custom_hooks=[]") ;;
    graphs_fused_gpu_log) EXTRA=("${GRAPHS_FUSED[@]}" "model.type=EncoderDecoder") ;;
    *) echo "unknown variant '$variant': stacked, mmseg, compiled, compiled_fused, graphs_fused," \
            "graphs_fused_no_prefetch or graphs_fused_gpu_log"
       exit 2 ;;
  esac
  rm -rf "/tmp/train_iteration_$variant"  # a fresh run: summarize_run reads one run's scalars
  python3 tools/train.py "$CONFIG" --work-dir "/tmp/train_iteration_$variant" \
      --cfg-options "${COMMON[@]}" "${EXTRA[@]}" 2>&1 | grep --line-buffered -v "warn" \
      > "$OUT/train_iteration_$variant.log"
  grep -E "Iter\(train\)" "$OUT/train_iteration_$variant.log" | tail -2
  python3 tools/analysis/summarize_run.py "/tmp/train_iteration_$variant" --gpus 1 \
      --batch-per-gpu "$BATCH" --skip-first 5 | tee "$OUT/train_iteration_$variant.json"
done
