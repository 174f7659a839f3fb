"""Training speed and peak memory of Cascade Mask R-CNN across patch sizes, from the real configs.

For each patch size p the detector is built from
``configs/coco/{backbone}_p{p}_cascade_mask_rcnn.py`` (model, optimizer wrapper with
layer decay and bf16 autocast, activation checkpointing as configured), fed random
800x1333 images (padded to 800x1344 by the detector's data preprocessor) with a few
random boxes and masks each, and trained for warm-up + timed iterations (forward,
backward, optimizer step: ``model.train_step``). Reports the median seconds per
iteration (CUDA events), images/s and peak allocated memory, 'OOM' where the GPU
runs out of memory. Writes ``bench_detection.{md,json}`` to ``--out`` (default
``$OUT`` if set, else work_dirs/bench_detection).

Each patch size runs in a fresh process (``bench_detection.py row ...``: this script with the
same options, for one patch size; the row reports its ``pid``), so no row inherits another's
compiled code, allocator or settings; this process only orchestrates.

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && PYTHONPATH=$PYTHONPATH:. \\
        python3 tools/analysis/bench_detection.py                  # ViT-B, p16 and p8
    ... bench_detection.py --backbone adventurer_b --patch-sizes 16 8 4
CPU smoke test (tiny backbone, 64x96 images, fp32, no layer of the GPU path skipped
except autocast):
    python tools/analysis/bench_detection.py --device cpu --tiny --out /tmp/bench
"""
import argparse
import gc
import json
import math
import os
import os.path as osp
import statistics
import sys

import torch
from mmengine.config import DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmpatch.apis import config as apis_config
from mmpatch.utils.benchmark import Timer, print_result, run_fresh_process
from mmpatch.utils.synthetic_det import shrink_det_model_cfg, synthetic_det_batch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUT_NAME = 'bench_detection'
FULL = dict(img_hw=(800, 1333), steps=10, warmup=3)
TINY = dict(img_hw=(64, 96), steps=2, warmup=1)


def config_path(backbone, patch_size, detector):
    return osp.join(REPO, 'configs', 'coco', f'{backbone}_p{patch_size}_{detector}.py')


def load_config(path, tiny, device, cfg_options):
    """The real config; tiny: shrunk model. On a CPU the optimizer wrapper is a plain fp32 one
    (mmengine's AmpOptimWrapper needs a GPU); everything else is kept."""
    cfg = apis_config.load_config(path, cfg_options)  # the shared loader: checks the options
    if tiny:
        shrink_det_model_cfg(cfg.model)
    if device.type != 'cuda' and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('dtype', None)
    return cfg


def measure(cfg, batch, img_hw, steps, warmup, device):
    """Median seconds per training iteration, peak allocated bytes (None on CPU), parameter
    count and the last loss."""
    from mmdet.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model).to(device).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    # Same-size images as mmdet's AspectRatioBatchSampler groups them; random boxes/masks.
    data = synthetic_det_batch([img_hw] * batch, num_boxes=5, seed=0)
    timer = Timer(device)
    for i in range(warmup + steps):
        if i >= warmup:
            timer.mark()
        losses = model.train_step(data, optim_wrapper)
        if i >= warmup:
            timer.mark()
    seconds = statistics.median(timer.step_seconds())
    peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
    params = sum(p.numel() for p in model.parameters())
    loss = losses['loss'].item()
    if not math.isfinite(loss):
        raise FloatingPointError(f'non-finite training loss {loss}')
    return seconds, peak, params, loss


def run_one(path, patch_size, args, setting, device):
    """One table row; 'OOM' in the measured columns where the GPU ran out of memory."""
    cfg = load_config(path, args.tiny, device, args.cfg_options)
    divisor = cfg.model.data_preprocessor.get('pad_size_divisor', 1)
    pad_hw = [math.ceil(s / divisor) * divisor for s in setting['img_hw']]
    tokens = math.ceil(pad_hw[0] / patch_size) * math.ceil(pad_hw[1] / patch_size)
    row = dict(config=osp.basename(path), patch_size=patch_size, tokens_per_image=tokens,
               batch=args.batch, with_cp=bool(cfg.model.backbone.get('with_cp')), pid=os.getpid(),
               optim=cfg.optim_wrapper.type + (f"/{cfg.optim_wrapper.dtype}"
                                               if 'dtype' in cfg.optim_wrapper else ''))
    if device.type == 'cuda':
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        seconds, peak, params, loss = measure(cfg, args.batch, setting['img_hw'],
                                              setting['steps'], setting['warmup'], device)
    except torch.cuda.OutOfMemoryError:
        row.update(s_per_iter='OOM', images_per_s='OOM', peak_mem_gib='OOM', params_m='', loss='')
    else:
        row.update(s_per_iter=round(seconds, 4), images_per_s=round(args.batch / seconds, 3),
                   peak_mem_gib=None if peak is None else round(peak / 2 ** 30, 2),
                   params_m=round(params / 1e6, 2), loss=round(loss, 4))
    if device.type == 'cuda':  # free what the finished or failed run held
        gc.collect()
        torch.cuda.empty_cache()
    return row


def markdown(rows):
    header = list(rows[0])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(row[k]) for k in header) + ' |' for row in rows]
    return '\n'.join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--backbone', default='vit_b', help='config prefix, e.g. vit_b, adventurer_t')
    ap.add_argument('--patch-sizes', type=int, nargs='+', default=[16, 8])
    ap.add_argument('--detector', default='cascade_mask_rcnn', help='config suffix')
    ap.add_argument('--batch', type=int, default=2, help='images per iteration (per GPU)')
    ap.add_argument('--img-hw', type=int, nargs=2, default=None, help='image height width')
    ap.add_argument('--steps', type=int, default=None, help='timed iterations (median taken)')
    ap.add_argument('--warmup', type=int, default=None)
    ap.add_argument('--device', default='cuda', help='cuda or cpu')
    ap.add_argument('--tiny', action='store_true', help='tiny backbone, 64x96 images (smoke test)')
    ap.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                    help='config overrides, e.g. model.backbone.with_cp=False')
    ap.add_argument('--out', default=os.environ.get('OUT') or f'work_dirs/{OUT_NAME}',
                    help='output folder (default: $OUT, else work_dirs/bench_detection)')
    return ap.parse_args(argv)


def settings_from(args):
    """The run's image size, steps and warm-up (TINY or FULL with the command line's overrides)."""
    setting = dict(TINY if args.tiny else FULL)
    for key in ('img_hw', 'steps', 'warmup'):
        if getattr(args, key) is not None:
            setting[key] = tuple(args.img_hw) if key == 'img_hw' else getattr(args, key)
    if setting['steps'] < 1 or setting['warmup'] < 0 or args.batch < 1:
        raise ValueError('--steps and --batch must be >= 1, --warmup >= 0')
    return setting


def row_main(argv):
    """``bench_detection.py row [options]``: the first of ``--patch-sizes``, in this process."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('CUDA is not available; use --device cpu --tiny for a smoke test')
    p = args.patch_sizes[0]
    row = run_one(config_path(args.backbone, p, args.detector), p, args, settings_from(args),
                  device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    print_result(dict(row=row, device_name=name))
    return row


def main(argv=None):
    """The table (this process orchestrates, never touching the device), or ``row``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['row']:
        return row_main(argv[1:])
    args = parse_args(argv)
    setting = settings_from(args)
    paths = [config_path(args.backbone, p, args.detector) for p in args.patch_sizes]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'no config {", ".join(missing)}; check --backbone/--patch-sizes/'
                                f'--detector against configs/coco/')
    device = torch.device(args.device)

    rows, device_name = [], None
    for path, p in zip(paths, args.patch_sizes):
        # the same options, one patch size (argparse keeps an option's last value)
        result = run_fresh_process(osp.abspath(__file__), ['row'] + argv + ['--patch-sizes', p])
        rows.append(result.get('row') or dict(config=osp.basename(path), patch_size=p,
                                              s_per_iter=result['status']))
        device_name = device_name or result.get('device_name')
        print(rows[-1], flush=True)
    text = markdown(rows)
    env = dict(torch=torch.__version__, device=str(device), device_name=device_name,
               img_hw=setting['img_hw'], steps=setting['steps'], warmup=setting['warmup'],
               tiny=args.tiny, cfg_options=dict(args.cfg_options))
    print(f"\n{env['device_name']}, {args.backbone} {args.detector}, images {setting['img_hw']}, "
          f"batch {args.batch}, train_step median of {setting['steps']} iterations\n\n{text}")
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, f'{OUT_NAME}.json'), 'w') as f:
        json.dump(dict(env=env, rows=rows), f, indent=2)
    with open(osp.join(args.out, f'{OUT_NAME}.md'), 'w') as f:
        f.write(text + '\n')
    return rows


if __name__ == '__main__':
    main()
