#!/bin/bash
# The GPU variant of the decoder-dependence sweep, in one device call: ViT-S and Adventurer-S at
# p in {8, 4, 2, 1}, linear head vs UperNet (configs/toy_gpu/), on the 128 px toy set, one GPU.
# The 16 cells run as STREAMS parallel tools/sweep.py processes sharing the GPU (each cell is
# small; this hides process start-up), then one --collect-only pass writes the table and plot.
# Train img/s and peak memory are therefore measured with the GPU shared: compare them within
# this table only.
# Device call: source .device-kit/setup.sh && bash tools/analysis/device_toy_sweep.sh
# Writes $OUT/{results.csv,results.md,results.png,sweep_logs.tar.gz}.
set -o pipefail
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
W=${SWEEP_DIR:-/tmp/sweep_toy_gpu}
LIMIT=${SWEEP_LIMIT_S:-420}
mkdir -p "$W"
[ -f data/toy_seg_128/meta.json ] || python3 tools/data/make_toy.py seg --out data/toy_seg_128 \
    --img-size 128 --num-train 400 || exit 1
streams=(  # heaviest cells first, one p1 cell per stream
  "vit_s_p1_linear vit_s_p8_linear vit_s_p8_upernet"
  "vit_s_p1_upernet vit_s_p4_linear vit_s_p4_upernet"
  "adventurer_s_p1_linear adventurer_s_p8_linear adventurer_s_p8_upernet"
  "adventurer_s_p1_upernet adventurer_s_p4_linear adventurer_s_p4_upernet"
  "vit_s_p2_linear vit_s_p2_upernet"
  "adventurer_s_p2_linear adventurer_s_p2_upernet"
)
for i in "${!streams[@]}"; do
  cfgs=()
  for c in ${streams[$i]}; do cfgs+=("configs/toy_gpu/$c.py"); done
  timeout "$LIMIT" python3 tools/sweep.py "${cfgs[@]}" --work-dir "$W" --no-baseline \
      > "$W/stream_$i.txt" 2>&1 &
done
wait
grep -h "FAILED\|Error" "$W"/stream_*.txt | head -20
python3 tools/sweep.py --config-dir configs/toy_gpu --backbones vit_s adventurer_s \
    --patch-sizes 8 4 2 1 --heads linear upernet --work-dir "$W" --collect-only \
    2>&1 | grep -v -e "warn" | tee "$W/collect.txt"
cp "$W"/results.{csv,md,png} "$OUT"/ 2>/dev/null
tar czf "$OUT/sweep_logs.tar.gz" -C "$W" --exclude='*.pth' .
