#!/bin/bash
# Multi-GPU checks on a 2-GPU machine, each through the normal tools:
#   1. parity: configs/toy/vit_t_p2_linear.py, seeds 0 1 2, on 1 GPU (batch 8) and on 2 GPUs
#      (batch 4 per GPU, the same total 8), every run through tools/sweep.py (--gpus 2 starts
#      torchrun and passes --launcher pytorch to tools/train.py and tools/test.py);
#   2. FSDP: the same toy cell + configs/_base_/fsdp.py (FlexibleRunner, FSDPStrategy), 2 GPUs,
#      trained, then tested from its (full, rank-0) checkpoint: configs/fsdp/vit_t_p2_linear_fsdp_toy.py.
# Device call: source .device-kit/setup.sh && bash tools/analysis/device_scale.sh
# Writes $OUT/scale.md (the table) and $OUT/scale_logs.tar.gz (every run's logs and results).
set -o pipefail
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
CELL=configs/toy/vit_t_p2_linear.py
W=/tmp/scale
mkdir -p $W
[ -f data/toy_seg/meta.json ] || python3 tools/data/make_toy.py seg --out data/toy_seg || exit 1
sweep() {  # sweep GPUS SEED [VISIBLE]
  CUDA_VISIBLE_DEVICES=${3:-0,1} timeout 240 python3 tools/sweep.py $CELL --gpus $1 --no-baseline \
    --work-dir $W/g$1_s$2 --cfg-options randomness.seed=$2 train_dataloader.batch_size=$((8 / $1)) \
    > $W/g$1_s$2.txt 2>&1 || echo "FAILED: gpus=$1 seed=$2 (see $W/g$1_s$2.txt)"
}
# 1 GPU: three seeds side by side (two on GPU 0, one on GPU 1), then 2 GPUs one after another.
sweep 1 0 0 & sweep 1 1 1 & sweep 1 2 0 & wait
for seed in 0 1 2; do sweep 2 $seed; done
# FSDP on 2 GPUs
CUDA_VISIBLE_DEVICES=0,1 timeout 240 python3 tools/sweep.py configs/fsdp/vit_t_p2_linear_fsdp_toy.py --gpus 2 \
  --no-baseline --work-dir $W/fsdp > $W/fsdp.txt 2>&1 || echo "FAILED: FSDP (see $W/fsdp.txt)"
python3 - $W <<'PY' | tee $OUT/scale.md
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
        print(f'\n{g}: mIoU mean {statistics.mean(vals):.2f}, std {statistics.stdev(vals):.2f} over {len(vals)} seeds')
PY
grep -hE "Iter\(train\) \[200/200\]|Iter\(val\).*mIoU|FSDP|FlexibleRunner|Error" $W/fsdp/*/2*/*.log 2>/dev/null | tail -8
tar czf $OUT/scale_logs.tar.gz -C $W --exclude='*.pth' .
