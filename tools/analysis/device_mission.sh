#!/bin/bash
# The mission command, at the GPU count a device session lends (the issue's target is 8 x H200):
#   1. an ADE20K-layout toy set, 512 x 512, 150 classes (tools/data/make_toy.py), under /tmp;
#   2. tools/dist_train.sh configs/ade20k/vit_b_p1_linear.py GPUS with --cfg-options that only
#      shorten the schedule (ITERS iterations, no in-training validation, one checkpoint, a log
#      line per iteration) and point at that data (data_root, .png images);
#   3. tools/dist_test.sh on that checkpoint; 4. the numbers, read back from mmengine's files by
#      tools/analysis/summarize_run.py (median s/iter without the first iteration, img/s, peak
#      memory of rank 0; nvidia-smi samples every GPU's memory.used every second).
# Device call: source .device-kit/setup.sh && bash tools/analysis/device_mission.sh GPUS ITERS
# (MISSION_NUM_TRAIN=N: fewer training images, for a quick rerun; default 200;
#  MISSION_SKIP_TEST=1: training only, e.g. the 1-GPU baseline of the scaling efficiency)
# Writes $OUT/mission_g<GPUS>/{summary.json,train.log,test.log,nvidia_smi.csv}.
set -o pipefail
GPUS=${1:?usage: device_mission.sh GPUS ITERS}
ITERS=${2:?usage: device_mission.sh GPUS ITERS}
CONFIG=configs/ade20k/vit_b_p1_linear.py
DATA=${MISSION_DATA:-/tmp/ade_toy512}
NAME=mission_g$GPUS
WORK=/tmp/$NAME
RES=${OUT:?set OUT}/$NAME
BATCH=2  # the config's per-GPU batch
mkdir -p "$RES"
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
[ -f "$DATA/meta.json" ] || python3 tools/data/make_toy.py seg --out "$DATA" --img-size 512 \
    --num-train ${MISSION_NUM_TRAIN:-200} --num-val 8 --num-classes 150 || exit 1
POINT=()
for split in train val test; do
  POINT+=("${split}_dataloader.dataset.data_root=$DATA" "${split}_dataloader.dataset.img_suffix=.png")
done
SHORT=("train_cfg.max_iters=$ITERS" "train_cfg.val_begin=$((ITERS + 1))"
       "default_hooks.checkpoint.interval=$ITERS" "default_hooks.logger.interval=1")
nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu,power.draw \
    --format=csv -l 1 > "$RES/nvidia_smi.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null' EXIT
PORT=$((29500 + GPUS)) bash tools/dist_train.sh $CONFIG "$GPUS" --work-dir "$WORK" \
    --cfg-options "${SHORT[@]}" "${POINT[@]}" 2>&1 | grep -v -e "^  warnings.warn" > "$RES/train.log"
grep -E "Iter\(train\)" "$RES/train.log" | tail -n "$ITERS"
[ -n "$MISSION_SKIP_TEST" ] || PORT=$((29510 + GPUS)) bash tools/dist_test.sh $CONFIG "$WORK/iter_$ITERS.pth" "$GPUS" \
    --work-dir "$WORK/test" --cfg-options "${POINT[@]}" 2>&1 | grep -v "^  warnings.warn" \
    > "$RES/test.log"
grep -E "Iter\(test\).*mIoU" "$RES/test.log"
python3 tools/analysis/summarize_run.py "$WORK" --gpus "$GPUS" --batch-per-gpu $BATCH \
    ${MISSION_BASELINE:+--baseline "$MISSION_BASELINE"} | tee "$RES/summary.json"
python3 - "$RES/nvidia_smi.csv" <<'PY' | tee -a "$RES/summary.json"
import csv, sys, json
peak = {}
for row in csv.reader(open(sys.argv[1])):
    if len(row) > 2 and row[1].strip().isdigit():
        gpu, mib = int(row[1]), float(row[2].split()[0])
        peak[gpu] = max(peak.get(gpu, 0), mib)
print(json.dumps({'nvidia_smi_peak_memory_used_gib': {g: round(m / 1024, 2) for g, m in sorted(peak.items())}}))
PY
