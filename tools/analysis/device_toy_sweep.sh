#!/bin/bash
# The GPU variant of the decoder-dependence sweep: small backbones (ViT-S, Adventurer-S) at
# p in {8, 4, 2, 1}, linear head vs UperNet (configs/toy_gpu/), on the 128 px toy set, one GPU,
# cells one after another through tools/sweep.py, then the table and plot.
# Cells run inside the sweep's process (one import, no validation during training: the test
# after it gives the number). Measured on one H200 (2026-12-01, with validation still on): the
# 8 ViT-S cells in 445 s (41-80 s each; 20-49 s of each is its 400 iterations), Adventurer-S
# 85-128 s per cell and 170 / 217 s for the first cell of a call (p8 / p1; the extra is likely
# Triton compiling mamba_ssm's kernels); a call spent 60-115 s outside its cells (~22 s of it
# the kit's setup; a collecting process after each cell, since removed, was part of the rest).
# Validation during training cost 4-14 s per cell (50 images at 0.08-0.27 s). On 2026-12-02 the
# two Adventurer-S p2 cells took one 402 s call (187 s and 98 s). So Adventurer-S takes two or
# three calls: PATCH_SIZES="8 4", then "2 1" (or "2" and "1"). The sweep's limit (SWEEP_LIMIT_S, default 480 s) leaves the call time for the kit
# and the save:
#   source .device-kit/setup.sh && bash tools/analysis/device_toy_sweep.sh vit_s
#   source .device-kit/setup.sh && PATCH_SIZES="8 4" bash tools/analysis/device_toy_sweep.sh adventurer_s
# PATCH_SIZES picks a part of the grid (default 8 4 2 1).
# Writes $OUT/{results.csv,results.md,results.png,sweep_logs.tar.gz} after every finished cell
# (tools/sweep.py rewrites its table after each cell; a call cut by the device's time limit still
# returns the cells done); to merge two calls, unpack both tars into one folder here and run
# tools/sweep.py --collect-only on it.
# Do not run cells side by side on one GPU: without MPS the processes time-slice the GPU;
# with 6 streams on one H200 (2026-11-22) ViT-S took 0.25 s per iteration at p4 and 0.6 s at p1
# (batch 16), and only 2 of the 16 cells finished in 400 s.
set -o pipefail
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
BACKBONES=${*:-vit_s adventurer_s}
W=${SWEEP_DIR:-/tmp/sweep_toy_gpu}
mkdir -p "$W"
[ -f data/toy_seg_128/meta.json ] || python3 tools/data/make_toy.py seg --out data/toy_seg_128 \
    --img-size 128 --num-train 400 || exit 1
GRID=(--config-dir configs/toy_gpu --backbones $BACKBONES --patch-sizes ${PATCH_SIZES:-8 4 2 1}
      --heads linear upernet --work-dir "$W" --no-train-val)
save() {  # the finished cells' table, plot and logs into $OUT (a cut call still returns them)
  cp "$W"/results.{csv,md,png} "$OUT"/ 2>/dev/null
  tar czf "$OUT/sweep_logs.tar.gz" -C "$W" --exclude='*.pth' .
}
timeout "${SWEEP_LIMIT_S:-480}" python3 tools/sweep.py "${GRID[@]}" 2>&1 \
    | grep --line-buffered -v -e "warn" -e "pkg_resources" -e "_bootstrap" \
    | while IFS= read -r line; do  # save after every finished cell
        echo "$line" | tee -a "$W/sweep.txt"
        [[ $line == *": training + testing ..."* ]] && save  # the table of the cells before it
      done
save
