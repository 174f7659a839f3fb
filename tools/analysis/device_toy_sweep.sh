#!/bin/bash
# The GPU variant of the decoder-dependence sweep: small backbones (configs/toy_gpu/: ViT-S,
# Adventurer-S), linear head vs UperNet, on a 128 px toy set of one scene family, over seeds,
# on one GPU, through tools/sweep.py; writes the report into $OUT after every finished cell
# (a call cut by its time limit still returns the cells done).
#   source .device-kit/setup.sh && bash tools/analysis/device_toy_sweep.sh vit_s
#   FAMILY=shape PATCH_SIZES="8 4 2" SEEDS="0 1 2" JOBS=4 bash tools/analysis/device_toy_sweep.sh vit_s
# Knobs: FAMILY (strokes, shape, control; make_toy.py seg --family), PATCH_SIZES (default
# 8 4 2 1), SEEDS (default 0 1 2), JOBS (cells at a time on the GPU, each its own process;
# default 1), SWEEP_LIMIT_S (default 480: the sweep's own limit, leaving the call time for the
# kit and the copies), SWEEP_DIR, OUT_NAME (the report's file prefix in $OUT).
# To merge two calls: unpack both tars into one folder and run tools/sweep.py --collect-only.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD  # mmpatch from this checkout (no install on the GPU machine)
BACKBONES=${*:-vit_s}
FAMILY=${FAMILY:-strokes}
NAME=${OUT_NAME:-sweep_${FAMILY}}
W=${SWEEP_DIR:-/tmp/$NAME}
DATA=/tmp/toy_seg_128_$FAMILY
mkdir -p "$W"
[ -f "$DATA/meta.json" ] || python3 tools/data/make_toy.py seg --out "$DATA" --img-size 128 \
    --num-train 400 --family "$FAMILY" || exit 1
GRID=(--config-dir configs/toy_gpu --backbones $BACKBONES --patch-sizes ${PATCH_SIZES:-8 4 2 1}
      --heads linear upernet --seeds ${SEEDS:-0 1 2} --jobs "${JOBS:-1}" --work-dir "$W"
      --cfg-options train_dataloader.dataset.data_root=$DATA val_dataloader.dataset.data_root=$DATA
      test_dataloader.dataset.data_root=$DATA)
save() {  # the finished cells' report and logs into $OUT (results.csv and .png are remade
          # from the logs by tools/sweep.py --collect-only; $OUT takes few files)
  cp "$W/results.md" "$OUT/$NAME.md" 2>/dev/null
  tar czf "$OUT/${NAME}_logs.tar.gz" -C "$W" --exclude='*.pth' .
}
timeout "${SWEEP_LIMIT_S:-480}" python3 tools/sweep.py "${GRID[@]}" 2>&1 \
    | grep --line-buffered -v -e "warn" -e "pkg_resources" -e "_bootstrap" \
    | while IFS= read -r line; do
        echo "$line" | tee -a "$W/sweep.txt"
        [[ $line == "["*"]"*": mIoU "* ]] && save
      done
python3 tools/sweep.py "${GRID[@]}" --collect-only > /dev/null 2>&1  # the report of a cut sweep
save
