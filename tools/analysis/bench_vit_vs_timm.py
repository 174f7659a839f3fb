"""Speed and memory of PatchViT against timm's VisionTransformer, same run, same settings.

Backbone forward + backward (no optimizer step) under autocast, for each patch
size and batch: warm-up steps, then the median of timed steps (CUDA events on
the GPU), images/s, peak allocated memory (reset before each model) and the
ratio ours / timm. Prints a Markdown table and writes
``bench_vit_vs_timm.{csv,json,md}`` to ``--out`` (default ``$OUT`` if set).

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && PYTHONPATH=$PYTHONPATH:. \
        python3 tools/analysis/bench_vit_vs_timm.py
CPU smoke test:
    python tools/analysis/bench_vit_vs_timm.py --device cpu --tiny --out /tmp/bench
"""
import argparse
import csv
import gc
import json
import os
import statistics

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.utils.benchmark import Timer

FULL = dict(arch=dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.), img_size=512,
            patch_sizes=(16, 8, 4, 2), batch_sizes=(16, 4, 1, 1), steps=10, warmup=3)
TINY = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2, mlp_ratio=4.), img_size=32,
            patch_sizes=(16, 8), batch_sizes=(2, 2), steps=2, warmup=1)
OUT_NAME = 'bench_vit_vs_timm'


def build_model(impl, arch, patch_size, img_size):
    """A backbone and the function that maps images to its features."""
    if impl == 'mmpatch':
        model = PatchViT(arch=arch, patch_size=patch_size, img_size=img_size)
        return model, lambda x: model(x)[0]
    model = VisionTransformer(img_size=img_size, patch_size=patch_size,
                              embed_dim=arch['embed_dims'], depth=arch['num_layers'],
                              num_heads=arch['num_heads'], mlp_ratio=arch['mlp_ratio'],
                              class_token=True, global_pool='', num_classes=0)
    return model, model.forward_features


def measure(impl, cfg, patch_size, batch, device, dtype):
    """Median seconds per forward+backward step and peak allocated bytes (None on CPU)."""
    model, features = build_model(impl, cfg['arch'], patch_size, cfg['img_size'])
    model.to(device).train()
    images = torch.randn(batch, 3, cfg['img_size'], cfg['img_size'], device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = features(images)
        out.float().mean().backward()

    timer = Timer(device)
    for i in range(cfg['warmup'] + cfg['steps']):
        model.zero_grad(set_to_none=True)
        if i >= cfg['warmup']:
            timer.mark()
        step()
        if i >= cfg['warmup']:
            timer.mark()
    seconds = statistics.median(timer.step_seconds())
    peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
    return seconds, peak


def run_one(impl, cfg, patch_size, batch, device, dtype):
    """One row of results; 'OOM' where the GPU runs out of memory."""
    row = dict(impl=impl, patch_size=patch_size, batch=batch, img_size=cfg['img_size'])
    if device.type == 'cuda':
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        seconds, peak = measure(impl, cfg, patch_size, batch, device, dtype)
    except torch.cuda.OutOfMemoryError:
        row.update(ms_per_step='OOM', images_per_s='OOM', peak_mem_gib='OOM')
    else:
        row.update(ms_per_step=round(seconds * 1e3, 3), images_per_s=round(batch / seconds, 3),
                   peak_mem_gib=None if peak is None else round(peak / 2 ** 30, 3))
    if device.type == 'cuda':  # free what the failed or finished run held
        gc.collect()
        torch.cuda.empty_cache()
    return row


def ratio(ours, theirs):
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and theirs:
        return round(ours / theirs, 3)
    return 'n/a'


def compare(rows):
    """Pair mmpatch and timm rows per patch size into ratio rows (ours / timm)."""
    by_key = {(r['patch_size'], r['impl']): r for r in rows}
    table = []
    for p in dict.fromkeys(r['patch_size'] for r in rows):
        ours, theirs = by_key[(p, 'mmpatch')], by_key[(p, 'timm')]
        table.append(dict(
            patch_size=p, batch=ours['batch'],
            ours_ms=ours['ms_per_step'], timm_ms=theirs['ms_per_step'],
            ours_img_s=ours['images_per_s'], timm_img_s=theirs['images_per_s'],
            speed_ratio=ratio(ours['images_per_s'], theirs['images_per_s']),
            ours_peak_gib=ours['peak_mem_gib'], timm_peak_gib=theirs['peak_mem_gib'],
            mem_ratio=ratio(ours['peak_mem_gib'], theirs['peak_mem_gib'])))
    return table


def markdown(table):
    header = list(table[0])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(row[k]) for k in header) + ' |' for row in table]
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', help='cuda or cpu')
    parser.add_argument('--tiny', action='store_true', help='tiny model and images (smoke test)')
    parser.add_argument('--dtype', choices=('bf16', 'fp16', 'fp32'), default='bf16',
                        help='autocast dtype (fp32: no autocast)')
    parser.add_argument('--patch-sizes', type=int, nargs='+', default=None)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=None)
    parser.add_argument('--steps', type=int, default=None, help='timed steps (median taken)')
    parser.add_argument('--warmup', type=int, default=None)
    parser.add_argument('--out', default=os.environ.get('OUT') or f'work_dirs/{OUT_NAME}',
                        help='output folder (default: $OUT, else work_dirs/)')
    return parser.parse_args(argv)


def config_from(args):
    cfg = dict(TINY if args.tiny else FULL)
    for key in ('patch_sizes', 'batch_sizes', 'steps', 'warmup'):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if len(cfg['patch_sizes']) != len(cfg['batch_sizes']):
        raise ValueError(f"give one batch size per patch size: {cfg['patch_sizes']} vs "
                         f"{cfg['batch_sizes']}")
    if cfg['steps'] < 1 or cfg['warmup'] < 0:
        raise ValueError('--steps must be >= 1 and --warmup >= 0')
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from(args)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('CUDA is not available; use --device cpu --tiny for a smoke test')
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=None)[args.dtype]
    torch.backends.cudnn.benchmark = True

    rows = []
    for p, batch in zip(cfg['patch_sizes'], cfg['batch_sizes']):
        for impl in ('mmpatch', 'timm'):
            rows.append(run_one(impl, cfg, p, batch, device, dtype))
            print(rows[-1], flush=True)
    table = compare(rows)
    text = markdown(table)
    env = dict(torch=torch.__version__, timm=timm.__version__, device=str(device),
               device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
               dtype=args.dtype, arch=cfg['arch'], img_size=cfg['img_size'],
               steps=cfg['steps'], warmup=cfg['warmup'])
    print(f"\n{env['device_name']}, {args.dtype} autocast, img {cfg['img_size']}, "
          f"forward+backward, median of {cfg['steps']} steps\n\n{text}")

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f'{OUT_NAME}.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(args.out, f'{OUT_NAME}.json'), 'w') as f:
        json.dump(dict(env=env, rows=rows, comparison=table), f, indent=2)
    with open(os.path.join(args.out, f'{OUT_NAME}.md'), 'w') as f:
        f.write(text + '\n')
    return table


if __name__ == '__main__':
    main()
