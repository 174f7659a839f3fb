#!/bin/bash
# The GPU runs behind results/, one sub-command each; every file lands in $OUT (default
# work_dirs/gpu_run/<sub-command>). Run from the repository root on a machine with the stack
# installed (bash tools/setup.sh); an environment script .device-kit/setup.sh beside the
# checkout, if there is one, is sourced first.
#
#   gpu_run.sh benchmark round1|round2 ROUND1_DIR|small|seg
#       round1: matmul ceiling, SDPA kernels 1k..262k tokens, ViT-B p16..p2 (ours compiled /
#               ours eager / timm / mmseg), then the mmseg training iteration;
#       round2: ViT-B p1 and Adventurer-B p16..p1, appended to round 1's CSVs (ROUND1_DIR);
#       small:  matmul ceiling, ViT-B p2 ours / timm / mmseg, ViT-B p1 ours, Adventurer-B p2 and
#               p1, then the training iteration with profiles;
#       seg:    check.py fused-ce, then the training iteration alone with profiles
#               (COMPILE_MODE=reduce-overhead: the blocks as CUDA graphs);
#       mamba:  check.py mamba-kernels parity (compiled blocks included), then PatchMamba-B
#               compiled and eager against PatchViT-B at p16 / 8 / 4 with the timm anchor and
#               its repeat, then profiles of PatchMamba p16 and p8 (eager, compiled);
#               everything in $OUT/mamba.tar.gz, rewritten after each step.
#   gpu_run.sh mission GPUS ITERS
#       tools/dist_train.sh configs/ade20k/vit_b_p1_linear.py on GPUS GPUs for ITERS iterations
#       on an ADE20K-layout toy set (512 x 512, 150 classes; only the schedule is shortened and
#       the data pointed at), then tools/dist_test.sh, then summarize_run.py and every GPU's
#       peak memory (nvidia-smi each second). MISSION_NUM_TRAIN (default 200),
#       MISSION_SKIP_TEST=1 (training only), MISSION_BASELINE (a 1-GPU summary.json: adds the
#       scaling efficiency), MISSION_DATA. Writes $OUT/mission_g<GPUS>/.
#   gpu_run.sh scale
#       on 2 GPUs: configs/toy/vit_t_p2_linear.py, seeds 0 1 2, on 1 GPU (batch 8) and on 2 GPUs
#       (batch 4 per GPU), then FSDP (configs/fsdp/vit_t_p2_linear_fsdp_toy.py), all through
#       tools/sweep.py; $OUT/scale.md and $OUT/scale_logs.tar.gz, rewritten after every run.
#   gpu_run.sh toy-sweep [BACKBONES]   (default vit_s)
#       the decoder-dependence sweep on one GPU (configs/toy_gpu: linear head vs UperNet on a
#       128 px toy set) through tools/sweep.py; the report is saved after every finished cell.
#       TASK=det: the detection sweep instead (configs/toy_det_gpu: Mask R-CNN with the simple
#       pyramid vs the multi-depth one on the 128 px toy COCO set of 3..40 px objects; PATCH_SIZES
#       default 16 8 4).
#       FAMILY (strokes, shape, control; default strokes), PATCH_SIZES (default 8 4 2 1),
#       SEEDS (default 0 1 2), JOBS (cells at a time, default 1), SWEEP_LIMIT_S (default 480),
#       SWEEP_DIR, OUT_NAME (the report's file prefix). To merge two runs: unpack both tars
#       into one folder and run tools/sweep.py --collect-only.
#   gpu_run.sh train-iteration [CONFIG [BATCH [ITERS [WORKERS]]]]
#       tools/train.py CONFIG (default configs/ade20k/vit_b_p16_linear.py, batch 16, 300
#       iterations, 14 workers) on an ADE20K-layout toy set, one run per variant in VARIANTS
#       (default "stock fast"): stock (the config as it is: mmseg's data path), fast (its twin
#       FAST_CONFIG, default configs/fast/vit_b_p16_linear_fast.py: the opt-in mmpatch/fast/
#       data path), and each with _graphs_fused (compile_blocks=reduce-overhead +
#       fast_loss=fused, where the step is shortest and the data path matters most).
#       Median s/iter from mmengine's scalars.json,
#       the first 5 records (compilation, then the batches the workers queued meanwhile) left
#       out. IMAGES=png: the toy set's lossless PNGs instead of JPEG as ADE20K's.
#       Writes $OUT/train_iteration_<variant>.{log,json}.
#   gpu_run.sh cost [benchmark.py cost options]
#       what every configs/ade20k and configs/coco leaf costs to train: sizes T and B timed
#       (each config in a fresh process), S and the rows over 2 PFLOP per iteration projected
#       from FLOPs; rows whose turn comes after COST_TIME_LIMIT_S (default 330) are projected
#       too. Writes $OUT/cost.{csv,md} (after every row) and $OUT/log.txt.
set -o pipefail
CMD=$1
case $CMD in
  benchmark|mission|scale|toy-sweep|train-iteration|cost) shift ;;
  *) echo "usage: gpu_run.sh benchmark|mission|scale|toy-sweep|train-iteration|cost [args] (got '$CMD')"
     exit 2 ;;
esac
if [ -f .device-kit/setup.sh ] && ! python3 -c 'import mmseg' 2>/dev/null; then
  source .device-kit/setup.sh || exit 1
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD  # mmpatch from this checkout
OUT=${OUT:-work_dirs/gpu_run/$CMD}
mkdir -p "$OUT"
QUIET=(-e ' - mmengine - INFO - ' -e '^decode_head\.' -e '^backbone\.')

benchmark() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used --format=csv
  case $1 in
    round1)
      timeout 260 python3 tools/analysis/benchmark.py models --sections ceilings sdpa models \
        --backbones PatchViT PatchViT-eager timm mmseg --patch-sizes 16 8 4 2 --out "$OUT" \
        2>&1 | tee "$OUT/log.txt"
      timeout 90 python3 tools/analysis/benchmark.py seg-iteration --out "$OUT" 2>&1 \
        | tee -a "$OUT/log.txt" | grep -v "${QUIET[@]}"
      ;;
    round2)
      [ -f "$2/models.csv" ] || { echo "round2 needs round 1's folder, got '$2'"; exit 2; }
      cp "$2/env.json" "$2/sdpa.csv" "$2/models.csv" "$OUT/"
      timeout 330 python3 tools/analysis/benchmark.py models --sections models \
        --backbones PatchViT PatchMamba --out "$OUT" 2>&1 | tee "$OUT/log2.txt"
      ;;
    small)
      timeout 250 python3 tools/analysis/benchmark.py models --sections ceilings models \
        --patch-sizes 2 1 --backbones PatchViT timm mmseg PatchMamba --out "$OUT" 2>&1 \
        | tee "$OUT/log.txt"
      timeout 80 python3 tools/analysis/benchmark.py seg-iteration --profile --out "$OUT" 2>&1 \
        | tee -a "$OUT/log.txt" | grep -v "${QUIET[@]}"
      ;;
    seg)
      timeout 120 python3 tools/analysis/check.py fused-ce --out "$OUT" 2>&1 \
        | tee "$OUT/fused_ce_log.txt"
      timeout 400 python3 tools/analysis/benchmark.py seg-iteration --profile \
        --compile-mode "${COMPILE_MODE:-default}" --out "$OUT" 2>&1 \
        | tee "$OUT/log.txt" | grep -v "${QUIET[@]}"
      # the profiles as one file
      tar czf "$OUT/seg_iteration_profiles.tar.gz" -C "$OUT" $(cd "$OUT" && ls seg_iteration_profile*.txt) \
        && rm "$OUT"/seg_iteration_profile*.txt
      return
      ;;
    mamba)
      local b=(python3 tools/analysis/benchmark.py) pack="tar czf $OUT/mamba.tar.gz -C $OUT part"
      mkdir -p "$OUT/part"
      timeout 120 python3 tools/analysis/check.py mamba-kernels --out "$OUT/part" 2>&1 \
        | grep -v "^|" | tail -5; $pack
      "${b[@]}" models --sections models --backbones timm PatchViT PatchMamba PatchMamba-eager \
        --patch-sizes 16 --row-timeout 150 --out "$OUT/part" 2>&1 | tee "$OUT/part/log.txt"; $pack
      "${b[@]}" models --sections models --backbones PatchViT PatchMamba PatchMamba-eager \
        --patch-sizes 8 4 --row-timeout 150 --out "$OUT/part" 2>&1 | tee -a "$OUT/part/log.txt"
      "${b[@]}" models --sections models report --backbones timm --patch-sizes 16 \
        --anchor-repeat --row-timeout 150 --out "$OUT/part" 2>&1 | tee -a "$OUT/part/log.txt"; $pack
      local spec
      for spec in PatchMamba-eager:16:16 PatchMamba:16:16 PatchMamba:8:4 PatchMamba-eager:8:4; do
        IFS=: read -r name p batch <<< "$spec"
        timeout 120 "${b[@]}" row --backbone "$name" --patch-size "$p" --batch "$batch" \
          --profile --out "$OUT/part" > /dev/null 2>&1; $pack
      done
      return
      ;;
    *) echo "usage: gpu_run.sh benchmark round1 | round2 ROUND1_DIR | small | seg | mamba"; exit 2 ;;
  esac
  python3 tools/analysis/benchmark.py report --out "$OUT" 2>&1 | tail -40
}

mission() {
  local gpus=${1:?usage: gpu_run.sh mission GPUS ITERS} iters=${2:?usage: gpu_run.sh mission GPUS ITERS}
  local config=configs/ade20k/vit_b_p1_linear.py data=${MISSION_DATA:-/tmp/ade_toy512}
  local work=/tmp/mission_g$gpus res=$OUT/mission_g$gpus batch=2  # the config's per-GPU batch
  mkdir -p "$res"
  [ -f "$data/meta.json" ] || python3 tools/data/make_toy.py seg --out "$data" --img-size 512 \
      --num-train "${MISSION_NUM_TRAIN:-200}" --num-val 8 --num-classes 150 || exit 1
  local point=() split
  for split in train val test; do
    point+=("${split}_dataloader.dataset.data_root=$data" "${split}_dataloader.dataset.img_suffix=.png")
  done
  local short=("train_cfg.max_iters=$iters" "train_cfg.val_begin=$((iters + 1))"
               "default_hooks.checkpoint.interval=$iters" "default_hooks.logger.interval=1")
  nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu,power.draw \
      --format=csv -l 1 > "$res/nvidia_smi.csv" &
  local smi=$!
  trap "kill $smi 2>/dev/null" EXIT
  PORT=$((29500 + gpus)) bash tools/dist_train.sh $config "$gpus" --work-dir "$work" \
      --cfg-options "${short[@]}" "${point[@]}" 2>&1 | grep -v -e "^  warnings.warn" > "$res/train.log"
  grep -E "Iter\(train\)" "$res/train.log" | tail -n "$iters"
  [ -n "$MISSION_SKIP_TEST" ] || PORT=$((29510 + gpus)) bash tools/dist_test.sh $config \
      "$work/iter_$iters.pth" "$gpus" --work-dir "$work/test" --cfg-options "${point[@]}" 2>&1 \
      | grep -v "^  warnings.warn" > "$res/test.log"
  grep -E "Iter\(test\).*mIoU" "$res/test.log"
  python3 tools/analysis/summarize_run.py "$work" --gpus "$gpus" --batch-per-gpu $batch \
      ${MISSION_BASELINE:+--baseline "$MISSION_BASELINE"} | tee "$res/summary.json"
  python3 - "$res/nvidia_smi.csv" <<'PY' | tee -a "$res/summary.json"
import csv, sys, json
peak = {}
for row in csv.reader(open(sys.argv[1])):
    if len(row) > 2 and row[1].strip().isdigit():
        gpu, mib = int(row[1]), float(row[2].split()[0])
        peak[gpu] = max(peak.get(gpu, 0), mib)
print(json.dumps({'nvidia_smi_peak_memory_used_gib': {g: round(m / 1024, 2) for g, m in sorted(peak.items())}}))
PY
}

scale_report() {  # the table of every finished run, and the logs, into $OUT
  python3 - "$1" > "$OUT/scale.md" <<'PY'
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
  tar czf "$OUT/scale_logs.tar.gz" -C "$1" --exclude='*.pth' .
}

scale_sweep() {  # scale_sweep WORK NAME GPUS VISIBLE CONFIG SEED [cfg options...]
  local w=$1 name=$2 gpus=$3 visible=$4 config=$5 seed=$6
  shift 6
  local opts=("$@")
  CUDA_VISIBLE_DEVICES=$visible timeout 150 python3 tools/sweep.py $config --gpus $gpus \
    --seeds $seed --no-baseline --no-train-val --work-dir $w/$name ${opts[@]:+--cfg-options} "${opts[@]}" \
    > $w/$name.txt 2>&1 \
    || echo "FAILED: $name (exit $?; see $w/$name.txt)"
  grep -E "^\[.*mIoU" $w/$name.txt
}

scale() {  # one process per GPU at a time (processes sharing a GPU time-slice it)
  local cell=configs/toy/vit_t_p2_linear.py w=/tmp/scale seed
  mkdir -p $w
  [ -f data/toy_seg/meta.json ] || python3 tools/data/make_toy.py seg --out data/toy_seg || exit 1
  # 1 GPU, batch 8: seeds 0 and 1 side by side (one per GPU), then seed 2
  scale_sweep $w g1_s0 1 0 $cell 0 & scale_sweep $w g1_s1 1 1 $cell 1 & wait
  scale_sweep $w g1_s2 1 0 $cell 2; scale_report $w
  for seed in 0 1 2; do  # 2 GPUs, batch 4 per GPU
    scale_sweep $w g2_s$seed 2 0,1 $cell $seed train_dataloader.batch_size=4; scale_report $w
  done
  scale_sweep $w fsdp 2 0,1 configs/fsdp/vit_t_p2_linear_fsdp_toy.py 0; scale_report $w
  grep -hE "Iter\(test\).*mIoU|Error" $w/fsdp/*/*/*/*.log $w/fsdp.txt 2>/dev/null | tail -5
  cat "$OUT/scale.md"
}

toy_sweep() {
  local backbones=${*:-vit_s} family=${FAMILY:-strokes} task=${TASK:-seg}
  local name w data grid=() point=() split
  if [ "$task" = det ]; then
    name=${OUT_NAME:-sweep_det}; data=/tmp/toy_coco_128
    [ -f "$data/meta.json" ] || python3 tools/data/make_toy.py coco --out "$data" --img-size 128 \
        --num-train 400 --num-val 100 --min-object-size 3 --max-object-size 40 || exit 1
    grid=(--config-dir configs/toy_det_gpu --heads simple multidepth --patch-sizes ${PATCH_SIZES:-16 8 4})
    for split in train val test; do point+=("${split}_dataloader.dataset.data_root=$data/"); done
    point+=("val_evaluator.ann_file=$data/annotations/instances_val.json"
            "test_evaluator.ann_file=$data/annotations/instances_val.json")
  else
    name=${OUT_NAME:-sweep_${family}}; data=/tmp/toy_seg_128_$family
    [ -f "$data/meta.json" ] || python3 tools/data/make_toy.py seg --out "$data" --img-size 128 \
        --num-train 400 --family "$family" || exit 1
    grid=(--config-dir configs/toy_gpu --heads linear upernet --patch-sizes ${PATCH_SIZES:-8 4 2 1})
    for split in train val test; do point+=("${split}_dataloader.dataset.data_root=$data"); done
  fi
  w=${SWEEP_DIR:-/tmp/$name}
  mkdir -p "$w"
  grid+=(--backbones $backbones --seeds ${SEEDS:-0 1 2} --jobs "${JOBS:-1}" --work-dir "$w"
         --cfg-options "${point[@]}")
  save() {  # the finished cells' report and logs (tools/sweep.py --collect-only remakes the rest)
    cp "$w/results.md" "$OUT/$name.md" 2>/dev/null
    tar czf "$OUT/${name}_logs.tar.gz" -C "$w" --exclude='*.pth' .
  }
  timeout "${SWEEP_LIMIT_S:-480}" python3 tools/sweep.py "${grid[@]}" 2>&1 \
      | grep --line-buffered -v -e "warn" -e "pkg_resources" -e "_bootstrap" \
      | while IFS= read -r line; do
          echo "$line" | tee -a "$w/sweep.txt"
          [[ $line == "["*"]"*": "*"mIoU "* || $line == "["*"]"*": "*"bbox AP "* ]] && save
        done
  python3 tools/sweep.py "${grid[@]}" --collect-only > /dev/null 2>&1  # the report of a cut sweep
  save
}

train_iteration() {
  local config=${1:-configs/ade20k/vit_b_p16_linear.py} batch=${2:-16} iters=${3:-300}
  local workers=${4:-14}  # 12 left a 16-core host's step slower (results/README.md)
  local images=${IMAGES:-jpg}
  local data=/tmp/ade_toy512_$images
  [ -f "$data/meta.json" ] || python3 tools/data/make_toy.py seg --out "$data" --img-size 512 \
      --num-train 64 --num-val 2 --num-classes 150 --image-format "$images" || exit 1
  local common=() split variant extra
  for split in train val test; do  # tools/train.py checks every split's folder
    common+=("${split}_dataloader.dataset.data_root=$data" "${split}_dataloader.dataset.img_suffix=.$images")
  done
  common+=("train_dataloader.batch_size=$batch" "train_dataloader.num_workers=$workers"
           "train_cfg.max_iters=$iters" "train_cfg.val_begin=$((iters + 1))"
           "default_hooks.checkpoint.interval=$((iters + 1))" "default_hooks.checkpoint.save_last=False"
           "default_hooks.logger.interval=10")
  local graphs_fused=("model.backbone.compile_blocks=reduce-overhead" "model.decode_head.fast_loss=fused")
  local fast_config=${FAST_CONFIG:-configs/fast/vit_b_p16_linear_fast.py} run_config
  for variant in ${VARIANTS:-stock fast}; do
    case $variant in
      stock|stock_graphs_fused) run_config=$config ;;
      fast|fast_graphs_fused) run_config=$fast_config ;;
      *) echo "unknown variant '$variant': stock, fast, stock_graphs_fused or fast_graphs_fused"
         exit 2 ;;
    esac
    extra=()
    [[ $variant == *_graphs_fused ]] && extra=("${graphs_fused[@]}")
    rm -rf "/tmp/train_iteration_$variant"  # a fresh run: summarize_run reads one run's scalars
    python3 tools/train.py "$run_config" --work-dir "/tmp/train_iteration_$variant" \
        --cfg-options "${common[@]}" "${extra[@]}" 2>&1 | grep --line-buffered -v "warn" \
        > "$OUT/train_iteration_$variant.log"
    grep -E "Iter\(train\)" "$OUT/train_iteration_$variant.log" | tail -2
    python3 tools/analysis/summarize_run.py "/tmp/train_iteration_$variant" --gpus 1 \
        --batch-per-gpu "$batch" --skip-first 5 | tee "$OUT/train_iteration_$variant.json"
  done
}

cost() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu,memory.used --format=csv
  timeout 560 python3 tools/analysis/benchmark.py cost --time-limit-s "${COST_TIME_LIMIT_S:-330}" \
    --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt" | grep --line-buffered -v "${QUIET[@]}" -e warn
}

case $CMD in
  benchmark) benchmark "$@" ;;
  cost) cost "$@" ;;
  mission) mission "$@" ;;
  scale) scale ;;
  toy-sweep) toy_sweep "$@" ;;
  train-iteration) train_iteration "$@" ;;
esac
