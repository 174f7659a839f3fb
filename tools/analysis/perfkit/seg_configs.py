"""Does a segmentation config fit and how fast is it? One GPU, synthetic data, the config as is.

For each config: the model and the optimizer wrapper are built from the config
exactly as the Runner does (AmpOptimWrapper bf16, layer-decay constructor,
with_cp, ...), then

- ``train``: ``model.train_step`` on a batch of ``train_dataloader.batch_size``
  random crops of the config's crop size with random labels (median seconds of
  the timed steps, peak GPU memory);
- ``predict``: ``model.val_step`` on one random image of ``--test-hw`` (default
  512 x 683, ADE20K's typical test size after the 2048 x 512 resize) with the
  config's ``test_cfg`` (slide or whole): seconds and peak memory.

Out-of-memory is a result ('OOM'). Writes ``seg_configs.{csv,md}`` under ``--out``.

    python tools/analysis/check.py seg-configs configs/ade20k/vit_b_p16_linear.py --out OUT
CPU smoke test (a toy config):
    python tools/analysis/check.py seg-configs configs/toy/vit_t_p8_upernet.py --device cpu \\
        --test-hw 64 64 --out /tmp/seg_configs
"""
import argparse
import os
import os.path as osp
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

from .utils import (OOM, free_device_memory, is_oom, markdown_table,
                                     median_step_seconds, peak_gib, write_csv)


def synthetic_batch(num, hw, num_classes, seed=0):
    """mmseg's packed inputs: uint8 images and SegDataSamples with random labels."""
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(num):
        inputs.append(torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=g))
        sample = SegDataSample(gt_sem_seg=PixelData(
            data=torch.randint(0, num_classes, (1, *hw), generator=g)))
        sample.set_metainfo(dict(img_shape=hw, ori_shape=hw, pad_shape=hw))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def train_row(model, cfg, device, warmup, steps):
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    crop = tuple(cfg.crop_size)
    batch = synthetic_batch(cfg.train_dataloader.batch_size, crop,
                            cfg.model.decode_head.num_classes)
    model.train()
    free_device_memory(device)
    seconds = median_step_seconds(lambda: model.train_step(batch, optim_wrapper),
                                  warmup, steps, device)
    return dict(train_s=round(seconds, 3), train_peak_gib=_gib(device),
                batch=cfg.train_dataloader.batch_size, crop=f'{crop[0]}x{crop[1]}')


def predict_row(model, cfg, device, hw):
    batch = synthetic_batch(1, hw, cfg.model.decode_head.num_classes, seed=1)
    model.eval()
    free_device_memory(device)
    with torch.no_grad():
        model.val_step(batch)  # warm-up (kernel choice, allocator)
        if device != 'cpu':
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.val_step(batch)
        if device != 'cpu':
            torch.cuda.synchronize()
    return dict(test_mode=cfg.model.test_cfg.mode, test_hw=f'{hw[0]}x{hw[1]}',
                predict_s=round(time.perf_counter() - start, 3), predict_peak_gib=_gib(device))


def _gib(device):
    peak = peak_gib(device)
    return None if peak is None else round(peak, 2)


def check(path, device, warmup, steps, test_hw):
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS
    row = dict(config=osp.splitext(osp.basename(path))[0])
    model = MODELS.build(cfg.model).to(device)
    row['params_m'] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    for name, measure in (('train', lambda: train_row(model, cfg, device, warmup, steps)),
                          ('predict', lambda: predict_row(model, cfg, device, test_hw))):
        try:
            row.update(measure())
        except Exception as err:  # noqa: BLE001  (OOM is a result; anything else re-raises)
            if not is_oom(err):
                raise
            row[f'{name}_s'] = OOM
    del model
    free_device_memory(device)
    return row


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='check.py seg-configs', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('configs', nargs='+', help='segmentation config files')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--warmup', type=int, default=1, help='untimed training steps (default 1)')
    ap.add_argument('--steps', type=int, default=2, help='timed training steps (default 2)')
    ap.add_argument('--test-hw', type=int, nargs=2, default=(512, 683), metavar=('H', 'W'))
    ap.add_argument('--out', required=True, help='folder for seg_configs.{csv,md}')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for path in args.configs:
        rows.append(check(path, args.device, args.warmup, args.steps, tuple(args.test_hw)))
        print(rows[-1], flush=True)
        write_csv(osp.join(args.out, 'seg_configs.csv'), rows)  # after each: a kill keeps the rest
    with open(osp.join(args.out, 'seg_configs.md'), 'w') as f:
        f.write(markdown_table(rows) + '\n')
    print(markdown_table(rows))

