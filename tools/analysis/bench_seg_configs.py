"""Training iteration time and peak memory of ADE20K configs, linear head vs UperNet.

Each config of ``configs/ade20k/{backbone}_p{p}_{head}.py`` is built as written (model,
optimizer wrapper with layer decay and bf16 autocast, activation checkpointing as
configured) and trained on random 512x512 images with random 150-class label maps
(``model.train_step``: forward, backward, optimizer step) at the config's per-GPU batch.
Median seconds per iteration after warm-up (CUDA events), peak allocated memory; 'OOM'
where the GPU runs out of memory. Writes ``bench_seg_configs.{md,csv}`` to ``--out``.

    source .device-kit/setup.sh && PYTHONPATH=$PYTHONPATH:. \\
        python3 tools/analysis/bench_seg_configs.py --patch-sizes 16 4 2
    python tools/analysis/bench_seg_configs.py --device cpu --tiny --out /tmp/b   # smoke test
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

from mmpatch.utils.benchmark import (OOM, free_device_memory, is_oom, markdown_table,
                                     median_step_seconds, peak_gib, write_csv)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2)


def random_seg_batch(batch, hw, num_classes, seed=0):
    """A data dict as mmseg's dataloader yields it: uint8 images and SegDataSamples."""
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, *hw), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=hw, ori_shape=hw, pad_shape=hw))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *hw), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def load_config(path, tiny, device):
    cfg = Config.fromfile(path)
    if tiny:
        cfg.model.backbone.arch = TINY_ARCH
        cfg.model.backbone.img_size = 64
        width = TINY_ARCH['embed_dims']
        if 'neck' in cfg.model:
            cfg.model.neck.in_channels = [width] * len(cfg.model.neck.in_channels)
            cfg.model.backbone.out_indices = (0, 1, 2, 3)
            cfg.model.decode_head.in_channels = [width] * 4
            cfg.model.decode_head.channels = 16
        else:
            cfg.model.decode_head.in_channels = width
        if cfg.model.get('auxiliary_head'):
            cfg.model.auxiliary_head.in_channels = width
    if device.type != 'cuda':
        for head in ('decode_head', 'auxiliary_head'):  # SyncBN needs a process group
            if cfg.model.get(head) and cfg.model[head].get('norm_cfg', {}).get('type') == 'SyncBN':
                cfg.model[head].norm_cfg = dict(type='BN', requires_grad=True)
        if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':  # needs a GPU
            cfg.optim_wrapper.type = 'OptimWrapper'
            cfg.optim_wrapper.pop('dtype', None)
            cfg.optim_wrapper.pop('loss_scale', None)
    return cfg


def measure(cfg, hw, warmup, steps, device):
    from mmseg.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model).to(device).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    batch = cfg.train_dataloader.batch_size
    data = random_seg_batch(batch, hw, cfg.model.decode_head.num_classes)
    seconds = median_step_seconds(lambda: model.train_step(data, optim_wrapper), warmup, steps, device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return batch, seconds, params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--backbone', default='vit_b', help='config prefix, e.g. vit_b, adventurer_b')
    ap.add_argument('--patch-sizes', type=int, nargs='+', default=[16, 4, 2])
    ap.add_argument('--heads', nargs='+', default=['linear', 'upernet'])
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--tiny', action='store_true', help='tiny backbone, 64x64 crops (smoke test)')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/bench_seg_configs')
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        ap.error('CUDA is not available; use --device cpu --tiny for a smoke test')
    hw = (64, 64) if args.tiny else (512, 512)
    rows = []
    for p in args.patch_sizes:
        for head in args.heads:
            path = osp.join(REPO, 'configs', 'ade20k', f'{args.backbone}_p{p}_{head}.py')
            if not osp.isfile(path):
                ap.error(f'no config {path}')
            cfg = load_config(path, args.tiny, device)
            row = dict(config=osp.basename(path), patch_size=p, head=head,
                       tokens=(hw[0] // p) * (hw[1] // p), with_cp=cfg.model.backbone.get('with_cp'))
            free_device_memory(device)
            try:
                batch, seconds, params = measure(cfg, hw, args.warmup, args.steps, device)
                row.update(batch=batch, s_per_iter=seconds, images_per_s=batch / seconds,
                           peak_mem_gib=peak_gib(device), params_m=params)
            except Exception as err:  # noqa: BLE001  (OOM is a result; anything else re-raised)
                if not is_oom(err):
                    raise
                row.update(s_per_iter=OOM, peak_mem_gib=OOM)
            free_device_memory(device)
            rows.append(row)
            print(row, flush=True)
    os.makedirs(args.out, exist_ok=True)
    write_csv(osp.join(args.out, 'bench_seg_configs.csv'), rows)
    table = markdown_table(rows)
    with open(osp.join(args.out, 'bench_seg_configs.md'), 'w') as f:
        f.write(table + '\n')
    print(table)
    return rows


if __name__ == '__main__':
    main()
