"""``benchmark.py detection``: training speed and peak memory of a detector across patch sizes.

For each patch size p the detector is built from
``configs/coco/{backbone}_p{p}_{detector}.py`` (model, optimizer wrapper with layer decay
and bf16 autocast, activation checkpointing as configured), fed random 800x1333 images
(padded to 800x1344 by the detector's data preprocessor) with a few random boxes and masks
each, and trained for warm-up + timed iterations (forward, backward, optimizer step:
``model.train_step``). Reports the median seconds per iteration (CUDA events), images/s and
peak allocated memory, 'OOM' where the GPU runs out of memory. Writes
``detection.{md,json}`` to ``--out``.

Each patch size runs in a fresh process (``benchmark.py detection-row``: the same options,
one patch size; the row reports its ``pid``), so no row inherits another's compiled code,
allocator or settings; this process only orchestrates. ``--tiny``: a tiny backbone, 64x96
images, fp32 (a CPU smoke test; no layer of the GPU path skipped except autocast).
"""
import argparse
import json
import math
import os
import os.path as osp
import statistics

import torch
from mmengine.config import DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmpatch.apis import config as apis_config

from .synthetic_det import shrink_det_model_cfg, synthetic_det_batch
from .utils import (BENCHMARK, OOM, Timer, check_device, device_name, free_device_memory,
                    fresh_rows, markdown_table, peak_gib, print_result)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
OUT_NAME = 'detection'
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
    """Median seconds per training iteration, peak allocated GiB (None on CPU), parameter
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
    peak = peak_gib(device)
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
    free_device_memory(device)
    try:
        seconds, peak, params, loss = measure(cfg, args.batch, setting['img_hw'],
                                              setting['steps'], setting['warmup'], device)
    except torch.cuda.OutOfMemoryError:
        row.update(s_per_iter=OOM, images_per_s=OOM, peak_mem_gib=OOM, params_m='', loss='')
    else:
        row.update(s_per_iter=round(seconds, 4), images_per_s=round(args.batch / seconds, 3),
                   peak_mem_gib=None if peak is None else round(peak, 2),
                   params_m=round(params / 1e6, 2), loss=round(loss, 4))
    free_device_memory(device)  # what the finished or failed run held
    return row


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='benchmark.py detection', description=__doc__,
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
                    help=f'output folder (default: $OUT, else work_dirs/{OUT_NAME})')
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
    """``benchmark.py detection-row [options]``: the first of ``--patch-sizes``, here."""
    args = parse_args(argv)
    device = torch.device(args.device)
    check_device(device)
    p = args.patch_sizes[0]
    row = run_one(config_path(args.backbone, p, args.detector), p, args, settings_from(args),
                  device)
    print_result(dict(row=row, env=dict(device_name=device_name(device))))
    return row


def main(argv):
    """The table; this process orchestrates and never touches the device."""
    args = parse_args(argv)
    setting = settings_from(args)
    paths = [config_path(args.backbone, p, args.detector) for p in args.patch_sizes]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'no config {", ".join(missing)}; check --backbone/--patch-sizes/'
                                f'--detector against configs/coco/')
    # the same options, one patch size each (argparse keeps an option's last value)
    plans = [(['detection-row'] + list(argv) + ['--patch-sizes', p],
              dict(config=osp.basename(path), patch_size=p))
             for path, p in zip(paths, args.patch_sizes)]
    rows, child_env = fresh_rows(BENCHMARK, plans)
    text = markdown_table(rows)
    env = dict(torch=torch.__version__, device=args.device, device_name=child_env.get('device_name'),
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
