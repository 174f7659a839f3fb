#!/bin/bash
# The performance benchmarks on the GPU machine, in two device calls; every file lands in $OUT.
#   round1 (~5.5 min): matmul ceiling, SDPA kernels 1k..262k tokens, ViT-B grid p16..p2
#                      (ours compiled / ours eager / timm / mmseg), mmseg training iteration.
#   round2 (~4 min):   ViT-B p1 (selective checkpointing) and Adventurer-B p16..p1 (mamba_ssm),
#                      appended to round 1's CSVs (folder ROUND1_DIR in the working tree).
#   small (~5 min):    the small-patch rows alone, in one run: matmul ceiling, ViT-B p2 ours /
#                      timm / mmseg, ViT-B p1 ours, Adventurer-B p2 and p1, then the mmseg
#                      training iteration against the backbone step (bench_seg_iteration.py).
#   seg:               check_fused_ce.py (the fused resize + cross-entropy kernel against the
#                      other loss paths), then the mmseg training iteration alone (ViT-B p16,
#                      batch 16): backbone step, segmentor with mmpatch's matmul, fused and
#                      mmseg's loss paths, end to end with the loader, profiles, the phase
#                      timeline (2026-12-02, commit a7ac39b: 170 s of a call including the
#                      kit's setup; rows added since). COMPILE_MODE=reduce-overhead: the
#                      blocks as CUDA graphs.
# Device call (carry .device-kit; the tree travels without .git, so name the commit):
#   source .device-kit/setup.sh && export PYTHONPATH=$PYTHONPATH:. && \
#     MMPATCH_COMMIT=<sha> bash tools/analysis/device_benchmark.sh round1
#   ... round2 results/benchmark/<round 1 folder, committed or untracked in the tree>
set -o pipefail
python3 -c 'import mmseg, mamba_ssm' 2>/dev/null || source .device-kit/setup.sh || exit 1  # once a call
export PYTHONPATH=$PYTHONPATH:. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used --format=csv
case $1 in
  round1)
    timeout 260 python3 tools/analysis/benchmark.py --sections ceilings sdpa models \
      --backbones PatchViT PatchViT-eager timm mmseg --patch-sizes 16 8 4 2 --out "$OUT" \
      2>&1 | tee "$OUT/log.txt"
    timeout 90 python3 tools/analysis/bench_seg_iteration.py --out "$OUT" 2>&1 \
      | tee -a "$OUT/log.txt" | grep -v -e ' - mmengine - INFO - ' -e '^decode_head\.' -e '^backbone\.'
    ;;
  round2)
    [ -f "$2/models.csv" ] || { echo "round2 needs round 1's folder, got '$2'"; exit 2; }
    cp "$2/env.json" "$2/sdpa.csv" "$2/models.csv" "$OUT/"
    timeout 330 python3 tools/analysis/benchmark.py --sections models \
      --backbones PatchViT PatchMamba --out "$OUT" 2>&1 | tee "$OUT/log2.txt"
    ;;
  small)
    timeout 250 python3 tools/analysis/benchmark.py --sections ceilings models --patch-sizes 2 1 \
      --backbones PatchViT timm mmseg PatchMamba --out "$OUT" 2>&1 | tee "$OUT/log.txt"
    timeout 80 python3 tools/analysis/bench_seg_iteration.py --profile --out "$OUT" 2>&1 \
      | tee -a "$OUT/log.txt" | grep -v -e ' - mmengine - INFO - ' -e '^decode_head\.' -e '^backbone\.'
    ;;
  seg)
    timeout 120 python3 tools/analysis/check_fused_ce.py --out "$OUT" 2>&1 | tee "$OUT/fused_ce_log.txt"
    timeout 400 python3 tools/analysis/bench_seg_iteration.py --profile --timeline \
      --compile-mode "${COMPILE_MODE:-default}" --out "$OUT" 2>&1 \
      | tee "$OUT/log.txt" | grep -v -e ' - mmengine - INFO - ' -e '^decode_head\.' -e '^backbone\.'
    # the device returns at most 8 files: the profiles travel as one
    tar czf "$OUT/seg_iteration_profiles.tar.gz" -C "$OUT" $(cd "$OUT" && ls seg_iteration_profile*.txt) \
      && rm "$OUT"/seg_iteration_profile*.txt
    exit
    ;;
  *) echo "usage: $0 round1 | round2 ROUND1_DIR | small | seg"; exit 2 ;;
esac
python3 tools/analysis/benchmark.py --sections report --out "$OUT" 2>&1 | tail -40
