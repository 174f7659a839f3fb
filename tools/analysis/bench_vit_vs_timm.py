"""Speed and memory of PatchViT against timm's VisionTransformer, same run, same settings.

Backbone forward + backward (no optimizer step) under autocast, for each patch
size and batch: warm-up steps, then the median of timed steps (CUDA events on
the GPU), images/s, peak allocated memory (reset before each model) and the
ratio ours / timm. Prints a Markdown table and writes
``bench_vit_vs_timm.{csv,json,md}`` to ``--out`` (default ``$OUT`` if set).

Each (implementation, patch size) row runs in a fresh process (``bench_vit_vs_timm.py row``,
which prints the row with its ``pid``): timed after the other model in one process, a model
inherits its compiled code, allocator and settings. This process only orchestrates.

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && PYTHONPATH=$PYTHONPATH:. \
        python3 tools/analysis/bench_vit_vs_timm.py
CPU smoke test:
    python tools/analysis/bench_vit_vs_timm.py --device cpu --tiny --out /tmp/bench
"""
import argparse
import gc
import json
import os
import statistics
import sys

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.utils.benchmark import Timer, print_result, run_fresh_process, write_csv

FULL = dict(arch=dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.), img_size=512,
            patch_sizes=(16, 8, 4, 2), batch_sizes=(16, 4, 1, 1), steps=10, warmup=3)
TINY = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2, mlp_ratio=4.), img_size=32,
            patch_sizes=(16, 8), batch_sizes=(2, 2), steps=2, warmup=1)
OUT_NAME = 'bench_vit_vs_timm'
DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=None)


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
    """One row of results, measured in this process; 'OOM' where the GPU runs out of memory."""
    row = dict(impl=impl, patch_size=patch_size, batch=batch, img_size=cfg['img_size'],
               pid=os.getpid())
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


def add_common_args(parser):
    """Options of the run that its row processes take too (passed on unchanged)."""
    parser.add_argument('--device', default='cuda', help='cuda or cpu')
    parser.add_argument('--tiny', action='store_true', help='tiny model and images (smoke test)')
    parser.add_argument('--dtype', choices=('bf16', 'fp16', 'fp32'), default='bf16',
                        help='autocast dtype (fp32: no autocast)')
    parser.add_argument('--steps', type=int, default=None, help='timed steps (median taken)')
    parser.add_argument('--warmup', type=int, default=None)


def common_argv(args):
    """``add_common_args``' options of ``args`` as a row process's argument list."""
    argv = ['--device', args.device, '--dtype', args.dtype] + (['--tiny'] if args.tiny else [])
    for flag, value in (('--steps', args.steps), ('--warmup', args.warmup)):
        argv += [] if value is None else [flag, value]
    return argv


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_common_args(parser)
    parser.add_argument('--patch-sizes', type=int, nargs='+', default=None)
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=None)
    parser.add_argument('--out', default=os.environ.get('OUT') or f'work_dirs/{OUT_NAME}',
                        help='output folder (default: $OUT, else work_dirs/)')
    return parser.parse_args(argv)


def row_main(argv):
    """``bench_vit_vs_timm.py row``: one (implementation, patch size, batch) row in this process."""
    parser = argparse.ArgumentParser(prog='bench_vit_vs_timm.py row', description=row_main.__doc__)
    parser.add_argument('--impl', choices=('mmpatch', 'timm'), required=True)
    parser.add_argument('--patch-size', type=int, required=True)
    parser.add_argument('--batch', type=int, required=True)
    add_common_args(parser)
    args = parser.parse_args(argv)
    args.patch_sizes = args.batch_sizes = None
    cfg, device = config_from(args), torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('CUDA is not available; use --device cpu --tiny for a smoke test')
    torch.backends.cudnn.benchmark = True  # this process times one model only
    row = run_one(args.impl, cfg, args.patch_size, args.batch, device, DTYPES[args.dtype])
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'
    print_result(dict(row=row, device_name=name))
    return row


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
    """The comparison (this process orchestrates, never touching the device), or ``row``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['row']:
        return row_main(argv[1:])
    args = parse_args(argv)
    cfg = config_from(args)
    device = torch.device(args.device)

    rows, device_name = [], None
    for p, batch in zip(cfg['patch_sizes'], cfg['batch_sizes']):
        for impl in ('mmpatch', 'timm'):
            result = run_fresh_process(os.path.abspath(__file__), [
                'row', '--impl', impl, '--patch-size', p, '--batch', batch] + common_argv(args))
            failed = result.get('status')
            rows.append(result['row'] if 'row' in result else dict(
                impl=impl, patch_size=p, batch=batch, img_size=cfg['img_size'],
                ms_per_step=failed, images_per_s=failed, peak_mem_gib=failed))
            device_name = device_name or result.get('device_name')
            print(rows[-1], flush=True)
    table = compare(rows)
    text = markdown(table)
    env = dict(torch=torch.__version__, timm=timm.__version__, device=str(device),
               device_name=device_name,
               dtype=args.dtype, arch=cfg['arch'], img_size=cfg['img_size'],
               steps=cfg['steps'], warmup=cfg['warmup'])
    print(f"\n{env['device_name']}, {args.dtype} autocast, img {cfg['img_size']}, "
          f"forward+backward, median of {cfg['steps']} steps\n\n{text}")

    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, f'{OUT_NAME}.csv'), rows)
    with open(os.path.join(args.out, f'{OUT_NAME}.json'), 'w') as f:
        json.dump(dict(env=env, rows=rows, comparison=table), f, indent=2)
    with open(os.path.join(args.out, f'{OUT_NAME}.md'), 'w') as f:
        f.write(text + '\n')
    return table


if __name__ == '__main__':
    main()
