#!/bin/bash
# Multi-GPU checks on a 2-GPU machine, each through the normal tools:
#   1. parity: configs/toy/vit_t_p2_linear.py, seeds 0 1 2, on 1 GPU (batch 8) and on 2 GPUs
#      (batch 4 per GPU, the same total 8), every run through tools/sweep.py --seeds N (--gpus 2
#      starts torchrun on python -m mmpatch.apis.train with --launcher pytorch);
#   2. FSDP: configs/fsdp/vit_t_p2_linear_fsdp_toy.py (the same toy cell + configs/_base_/fsdp.py:
#      FlexibleRunner, FSDPStrategy) on 2 GPUs, trained, then tested from its rank-0 checkpoint.
# One process per GPU at a time (processes sharing a GPU time-slice it: see device_toy_sweep.sh).
# The table is rewritten and the logs re-packed after every run, so a call cut short still
# brings back what finished.
# Device call: source .device-kit/setup.sh && bash tools/analysis/device_scale.sh
# Writes $OUT/scale.md (the table) and $OUT/scale_logs.tar.gz (every run's logs and results).
set -o pipefail
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
CELL=configs/toy/vit_t_p2_linear.py
W=/tmp/scale
mkdir -p $W
[ -f data/toy_seg/meta.json ] || python3 tools/data/make_toy.py seg --out data/toy_seg || exit 1

report() {  # the table of every finished run, and the logs, into $OUT
  python3 - $W > "$OUT/scale.md" <<'PY'
import csv, glob, os, statistics, sys
root = sys.argv[1]
rows = []
for path in sorted(glob.glob(os.path.join(root, '*', 'results.csv'))):
    run = os.path.basename(os.path.dirname(path))
    for r in csv.DictReader(open(path)):
        rows.append((run, r['config'], r['mIoU'], r['train_img_s'], r['peak_mem_MB']))
print('| run | cell | mIoU | train img/s | peak mem MB |\n|---|---|---|---|---|')
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
for g in ('g1', 'g2'):
    vals = [float(r[2]) for r in rows if r[0].startswith(g + '_')]
    if len(vals) > 1:
        print(f'\n{g}: mIoU mean {statistics.mean(vals):.2f}, std {statistics.stdev(vals):.2f} '
              f'over {len(vals)} seeds')
PY
  tar czf "$OUT/scale_logs.tar.gz" -C $W --exclude='*.pth' .
}
sweep() {  # sweep NAME GPUS VISIBLE CONFIG SEED [cfg options...]
  local name=$1 gpus=$2 visible=$3 config=$4 seed=$5
  shift 5
  local opts=("$@")
  CUDA_VISIBLE_DEVICES=$visible timeout 150 python3 tools/sweep.py $config --gpus $gpus \
    --seeds $seed --no-baseline --no-train-val --work-dir $W/$name ${opts[@]:+--cfg-options} "${opts[@]}" \
    > $W/$name.txt 2>&1 \
    || echo "FAILED: $name (exit $?; see $W/$name.txt)"
  grep -E "^\[.*mIoU" $W/$name.txt
}
# 1 GPU, batch 8: seeds 0 and 1 side by side (one per GPU), then seed 2
sweep g1_s0 1 0 $CELL 0 & sweep g1_s1 1 1 $CELL 1 & wait
sweep g1_s2 1 0 $CELL 2; report
# 2 GPUs, batch 4 per GPU
for seed in 0 1 2; do
  sweep g2_s$seed 2 0,1 $CELL $seed train_dataloader.batch_size=4; report
done
# FSDP on 2 GPUs
sweep fsdp 2 0,1 configs/fsdp/vit_t_p2_linear_fsdp_toy.py 0; report
grep -hE "Iter\(test\).*mIoU|Error" $W/fsdp/*/*/*/*.log $W/fsdp.txt 2>/dev/null | tail -5
cat "$OUT/scale.md"
