"""Training-step speed, memory and FLOP efficiency of the backbones against timm and mmseg.

Sections (all in one run, so every ratio compares numbers of one GPU and one run):

- ``ceilings``: the bf16 matmul rate of this GPU (8192^3, random operands).
- ``sdpa``: each SDPA kernel (cuDNN, flash, memory-efficient, PyTorch's default
  and our 'auto' choice), forward + backward in bf16, 12 heads x 64, from 1k to
  262k tokens; TFLOP/s and the error against the math kernel in float32
  (outputs and gradients where the N x N matrix fits; above that, the outputs
  of the first 256 queries).
- ``models``: one full training step (autocast forward, backward, fused AdamW
  step) per backbone x patch size x batch at one resolution: median step time,
  images/s, tokens/s, peak memory, model FLOPs (3 x forward, counted with
  ``count_flops_by_op``; recomputation not counted) and achieved TFLOP/s, as a
  fraction of the matmul ceiling and of the attention-aware ceiling
  ``flops / (other / matmul_rate + attention / best_sdpa_rate(tokens))``.
  Backbones: 'PatchViT' (ours: compiled blocks, 'auto' attention),
  'PatchViT-eager', 'timm' (``VisionTransformer``), 'mmseg'
  (``mmseg.models.VisionTransformer``) and any registry name (e.g. 'PatchMamba').
  Out-of-memory is a row marked OOM.
- ``report``: CSV files of one or more runs -> ``benchmark.md`` and ``benchmark.png``.

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && export PYTHONPATH=$PYTHONPATH:. && \
        python3 tools/analysis/benchmark.py --out $OUT
CPU smoke test:
    python tools/analysis/benchmark.py --device cpu --tiny --out /tmp/bench
"""
import argparse
import json
import math
import os
import platform
import time
import traceback
from datetime import date

import torch
import torch.nn.functional as F

from mmpatch.models.utils.sdpa_backend import (choose_sdpa_backends, sdpa_backend_context)
from mmpatch.utils.benchmark import (OOM, attention_flops, free_device_memory, is_oom,
                                     markdown_table, matmul_tflops, median_step_seconds,
                                     peak_gib, relative_error, sdpa_step, write_csv)
from mmpatch.utils.flops import count_flops_by_op, split_attention_flops

VIT_B = dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.)
# (patch, batch, backbones): ViT-B / Adventurer-B, 512 x 512 crops.
FULL_GRID = [
    (16, 16, ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg', 'PatchMamba')),
    (8, 4, ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg', 'PatchMamba')),
    (4, 1, ('PatchViT', 'timm', 'mmseg', 'PatchMamba')),
    (2, 1, ('PatchViT', 'timm', 'mmseg', 'PatchMamba')),
    (1, 1, ('PatchViT', 'PatchMamba')),
]
FULL = dict(arch=VIT_B, mamba_arch='base', img_size=512, grid=FULL_GRID, warmup=3,
            budget_s=3.0, max_steps=20, cp_from_tokens=100_000,
            sdpa_tokens=(1024, 4096, 16384, 65536, 262144), sdpa_heads=12, sdpa_head_dim=64,
            sdpa_tokens_per_batch=16384, sdpa_max_step_s=5.0, matmul_n=8192)
TINY = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2, mlp_ratio=4.),
            mamba_arch=dict(embed_dims=64, num_layers=2, headdim=16, d_state=16, chunk_size=16),
            img_size=32, grid=[(16, 2, ('PatchViT', 'timm', 'mmseg', 'PatchMamba')),
                               (4, 1, ('PatchViT', 'PatchMamba'))],
            warmup=1, budget_s=0.05, max_steps=2, cp_from_tokens=40,
            sdpa_tokens=(64, 256), sdpa_heads=2, sdpa_head_dim=16, sdpa_tokens_per_batch=256,
            sdpa_max_step_s=5.0, matmul_n=256)
VIT_FAMILY = ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg')  # the same ViT, compared by ratios
SDPA_KERNELS = ('cudnn', 'flash', 'efficient', 'default', 'auto')
CHECK_QUERIES = 256  # queries checked against math above the full-check size
FULL_CHECK_TOKENS = 4096


# ---------------------------------------------------------------- models

def compiles(name, with_cp, device):
    """Ours compiles its blocks on CUDA, except with checkpointing (long sequences), where
    attention is > 95% of the FLOPs and eager blocks keep it out of the recomputation."""
    return name == 'PatchViT' and device.type == 'cuda' and not with_cp


def build_backbone(name, cfg, patch_size, with_cp, device):
    """(model, features) for a backbone name; features maps images to one output tensor."""
    arch, img = cfg['arch'], cfg['img_size']
    if name in ('PatchViT', 'PatchViT-eager'):
        from mmpatch.models.backbones.patch_vit import PatchViT
        model = PatchViT(arch=arch, patch_size=patch_size, img_size=img, with_cp=with_cp,
                         attn_backend='auto', compile_blocks=compiles(name, with_cp, device))
        return model, lambda x: model(x)[-1]
    if name == 'timm':
        from timm.models.vision_transformer import VisionTransformer
        model = VisionTransformer(img_size=img, patch_size=patch_size, embed_dim=arch['embed_dims'],
                                  depth=arch['num_layers'], num_heads=arch['num_heads'],
                                  mlp_ratio=arch['mlp_ratio'], class_token=True, global_pool='',
                                  num_classes=0)
        model.set_grad_checkpointing(with_cp)
        return model, model.forward_features
    if name == 'mmseg':
        from mmseg.models.backbones import VisionTransformer
        model = VisionTransformer(img_size=img, patch_size=patch_size, embed_dims=arch['embed_dims'],
                                  num_layers=arch['num_layers'], num_heads=arch['num_heads'],
                                  mlp_ratio=int(arch['mlp_ratio']), final_norm=True, with_cp=with_cp)
        return model, lambda x: model(x)[-1]
    import mmpatch.models  # noqa: F401  (registers our backbones)
    from mmseg.registry import MODELS
    arch = cfg['mamba_arch'] if name == 'PatchMamba' else cfg['arch']
    model = MODELS.build(dict(type=name, arch=arch, patch_size=patch_size, img_size=img,
                              with_cp=with_cp))
    return model, lambda x: model(x)[-1]


def train_step_fn(model, features, batch, img_size, device):
    """One training step: autocast bf16 forward, backward of a scalar, fused AdamW step."""
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  **(dict(fused=True) if device.type == 'cuda' else {}))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = features(images)
        out.float().mean().backward()
        optimizer.step()
    return step


def timed_steps(step, cfg, device, warmup):
    """Warm up, then time as many steps as fit ``budget_s`` (2 .. max_steps); median seconds."""
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    last = time.perf_counter() - start
    steps = int(min(cfg['max_steps'], max(2, cfg['budget_s'] // max(last, 1e-6))))
    return median_step_seconds(step, 0, steps, device), steps


_FLOPS = {}  # (family, patch, arch repr, img) -> (total, attention)


def model_flops(name, cfg, patch_size):
    """Forward FLOPs of one image: (total, attention), counted on fake CPU tensors.

    The three ViTs compute the same function, so all get PatchViT's count
    (mmseg's attention would otherwise show as plain batched matmuls).
    """
    family = 'PatchViT' if name in VIT_FAMILY else name
    img = cfg['img_size']
    key = (family, patch_size, repr(cfg['arch']), repr(cfg['mamba_arch']), img)
    if key not in _FLOPS:
        model, _ = build_backbone(family, cfg, patch_size, with_cp=False, device=torch.device('cpu'))
        counts = count_flops_by_op(_Features(model, family), (1, 3, img, img))
        attention, other = split_attention_flops(counts)
        _FLOPS[key] = (attention + other, attention)
    return _FLOPS[key]


class _Features(torch.nn.Module):
    """Wraps a backbone so that forward returns one tensor (timm: forward_features)."""

    def __init__(self, model, name):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x):
        return self.model.forward_features(x) if self.name == 'timm' else self.model(x)[-1]


def attention_ceiling(sdpa_rows, tokens):
    """Best measured SDPA TFLOP/s at the measured token count nearest (in log) to ``tokens``."""
    rates = {}
    for r in sdpa_rows:
        if isinstance(r.get('tflops'), float):
            rates[r['tokens']] = max(rates.get(r['tokens'], 0.), r['tflops'])
    if not rates:
        return None
    nearest = min(rates, key=lambda n: abs(math.log(n / tokens)))
    return rates[nearest]


def bench_model(name, patch_size, batch, cfg, device, ceilings, sdpa_rows):
    img = cfg['img_size']
    tokens = math.ceil(img / patch_size) ** 2
    with_cp = tokens >= cfg['cp_from_tokens']
    row = dict(backbone=name, patch_size=patch_size, img_size=img, batch=batch, tokens=tokens,
               with_cp=with_cp, compiled=compiles(name, with_cp, device))
    total, attention = model_flops(name, cfg, patch_size)
    step_flops = 3 * total * batch
    row.update(gflops_fwd_per_img=total / 1e9, attention_share=attention / total)
    free_device_memory(device)
    try:
        model, features = build_backbone(name, cfg, patch_size, with_cp, device)
        model.to(device).train()
        step = train_step_fn(model, features, batch, img, device)
        warmup = 1 if with_cp else cfg['warmup']
        seconds, steps = timed_steps(step, cfg, device, warmup)
    except Exception as err:  # noqa: BLE001  (recorded in the row and printed in full)
        if is_oom(err):
            row.update(status=OOM, peak_gib=OOM)
        else:  # one broken backbone must not cost the other rows of a device run
            traceback.print_exc()
            row.update(status=f'error: {type(err).__name__}: {str(err).splitlines()[0][:150]}')
        return row
    finally:
        model = features = step = None
        peak = peak_gib(device)
        free_device_memory(device)
    tflops = step_flops / seconds / 1e12
    row.update(status='ok', steps=steps, ms_per_step=seconds * 1e3, images_per_s=batch / seconds,
               tokens_per_s=batch * tokens / seconds, peak_gib=peak, model_tflops=tflops)
    if ceilings.get('matmul_tflops'):
        matmul = ceilings['matmul_tflops']
        row['frac_matmul_ceiling'] = tflops / matmul
        attn_rate = attention_ceiling(sdpa_rows, tokens) if attention else None
        if attention and attn_rate:
            floor_s = 3 * batch * ((total - attention) / matmul + attention / attn_rate) / 1e12
            row['frac_attn_aware_ceiling'] = floor_s / seconds
        elif not attention:
            row['frac_attn_aware_ceiling'] = tflops / matmul
    return row


def add_ratios(rows):
    """images/s of each ViT row over timm's (and mmseg's) at the same patch size and batch."""
    ref = {(r['backbone'], r['patch_size'], r['batch']): r.get('images_per_s') for r in rows}
    for r in rows:
        if r['backbone'] not in VIT_FAMILY:
            continue
        for other in ('timm', 'mmseg'):
            theirs = ref.get((other, r['patch_size'], r['batch']))
            ours = r.get('images_per_s')
            if r['backbone'] != other and isinstance(ours, float) and isinstance(theirs, float):
                r[f'speed_vs_{other}'] = ours / theirs
            elif r['backbone'] != other and isinstance(ours, float) and theirs is None and \
                    any(x['backbone'] == other and x['patch_size'] == r['patch_size']
                        and x.get('status') == OOM for x in rows):
                r[f'speed_vs_{other}'] = f'{other} OOM'
    return rows


# ---------------------------------------------------------------- SDPA kernels

def sdpa_context(kernel, device, dtype, head_dim):
    if kernel == 'default':
        names = None
    elif kernel == 'auto':
        capability = torch.cuda.get_device_capability(device) if device.type == 'cuda' else None
        names = choose_sdpa_backends(device.type, dtype, head_dim, capability)
    else:
        names = (kernel,)
    return lambda: sdpa_backend_context(names)


def check_against_math(kernel, tokens, heads, head_dim, device, dtype):
    """Relative error of a kernel's output (and gradients if small) against float32 math."""
    gen = torch.Generator(device=device).manual_seed(tokens)
    q, k, v = (torch.randn((1, heads, tokens, head_dim), device=device, dtype=dtype, generator=gen)
               .requires_grad_() for _ in range(3))
    full = tokens <= FULL_CHECK_TOKENS
    with sdpa_context(kernel, device, dtype, head_dim)():
        out = F.scaled_dot_product_attention(q, k, v)
    queries = tokens if full else CHECK_QUERIES
    ref_q, ref_k, ref_v = (t.detach()[:, :, :n].float().requires_grad_()
                           for t, n in ((q, queries), (k, tokens), (v, tokens)))
    with sdpa_backend_context(('math',)):
        ref = F.scaled_dot_product_attention(ref_q, ref_k, ref_v)
    errors = dict(err_out=relative_error(out[:, :, :queries], ref))
    if full:
        grad = torch.randn(out.shape, device=device, dtype=dtype, generator=gen)
        got = torch.autograd.grad(out, (q, k, v), grad)
        want = torch.autograd.grad(ref, (ref_q, ref_k, ref_v), grad.float())
        errors['err_grad'] = max(relative_error(g, w) for g, w in zip(got, want))
    return errors


def bench_sdpa(cfg, device):
    """Rows of (tokens, kernel): ms and TFLOP/s of forward + backward, and the error vs math."""
    dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
    heads, head_dim = cfg['sdpa_heads'], cfg['sdpa_head_dim']
    rows, last_seconds = [], {}
    for tokens in cfg['sdpa_tokens']:
        batch = max(1, cfg['sdpa_tokens_per_batch'] // tokens)
        for kernel in SDPA_KERNELS:
            row = dict(tokens=tokens, batch=batch, heads=heads, head_dim=head_dim, kernel=kernel)
            if kernel == 'auto':
                cap = torch.cuda.get_device_capability(device) if device.type == 'cuda' else None
                row['auto_order'] = '>'.join(choose_sdpa_backends(device.type, dtype, head_dim, cap))
            rows.append(row)
            seconds_before, tokens_before = last_seconds.get(kernel, (0., tokens))
            predicted = seconds_before * (tokens / tokens_before) ** 2  # attention is O(N^2)
            if predicted > cfg['sdpa_max_step_s']:
                row.update(status=f'skipped (predicted {predicted:.1f} s a step)')
                continue
            try:
                row.update(check_against_math(kernel, tokens, heads, head_dim, device, dtype))
                step = sdpa_step(sdpa_context(kernel, device, dtype, head_dim), batch, heads,
                                 tokens, head_dim, device, dtype)
                seconds, steps = timed_steps(step, dict(cfg, max_steps=10, budget_s=1.0), device, 1)
            except RuntimeError as err:  # a kernel that cannot run this call is a result
                row.update(status=f'unsupported: {str(err).splitlines()[0][:120]}')
                continue
            flops = attention_flops(batch, heads, tokens, head_dim)
            row.update(status='ok', steps=steps, ms=seconds * 1e3, tflops=flops / seconds / 1e12)
            last_seconds[kernel] = (seconds, tokens)
    return rows


# ---------------------------------------------------------------- report

PLOT_NAME = 'benchmark.png'
MODEL_COLUMNS = ('backbone', 'patch_size', 'batch', 'tokens', 'with_cp', 'compiled', 'status',
                 'ms_per_step',
                 'images_per_s', 'tokens_per_s', 'peak_gib', 'gflops_fwd_per_img',
                 'attention_share', 'model_tflops', 'frac_matmul_ceiling',
                 'frac_attn_aware_ceiling', 'speed_vs_timm', 'speed_vs_mmseg')
SDPA_COLUMNS = ('tokens', 'batch', 'kernel', 'status', 'ms', 'tflops', 'err_out', 'err_grad',
                'auto_order')


def write_report(out, env, model_rows, sdpa_rows):
    lines = [f"# Training-step benchmark: {env.get('device_name')}, {env.get('date')}, "
             f"commit {env.get('commit')}", '',
             f"torch {env.get('torch')}, timm {env.get('timm')}, bf16 autocast, fused AdamW; "
             f"crop {env.get('img_size')}; matmul ceiling "
             f"{_fmt(env.get('matmul_tflops'))} TFLOP/s (bf16 {env.get('matmul_n')}^3).", '',
             'Model FLOPs = 3 x forward (attention and SSD included, recomputation not); '
             '`frac_attn_aware_ceiling` = (other FLOPs / matmul rate + attention FLOPs / best '
             'measured SDPA rate at that length) / step time.', '',
             '## Training step per backbone', '', markdown_table(model_rows, _present(MODEL_COLUMNS, model_rows)),
             '', '## SDPA kernels (forward + backward)', '',
             markdown_table(sdpa_rows, _present(SDPA_COLUMNS, sdpa_rows)), '']
    with open(os.path.join(out, 'benchmark.md'), 'w') as f:
        f.write('\n'.join(lines))
    plot(out, model_rows, sdpa_rows, env)


def _present(columns, rows):
    return [c for c in columns if any(c in r for r in rows)]


def _fmt(value):
    return f'{value:.0f}' if isinstance(value, float) else str(value)


def plot(out, model_rows, sdpa_rows, env):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ok = [r for r in model_rows if r.get('status') == 'ok']
    for name in dict.fromkeys(r['backbone'] for r in ok):
        pts = sorted((r['patch_size'], r['images_per_s'], r['model_tflops'])
                     for r in ok if r['backbone'] == name)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], 'o-', label=name)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], 'o-', label=name)
    for ax, label in ((axes[0], 'images/s (training step)'), (axes[1], 'model TFLOP/s')):
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.invert_xaxis()
        ax.set_xlabel('patch size')
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    matmul = env.get('matmul_tflops')
    if matmul:
        axes[1].axhline(matmul, color='k', ls='--', lw=1, label='matmul ceiling')
        axes[2].axhline(matmul, color='k', ls='--', lw=1, label='matmul ceiling')
    for kernel in SDPA_KERNELS:
        pts = [(r['tokens'], r['tflops']) for r in sdpa_rows
               if r['kernel'] == kernel and isinstance(r.get('tflops'), float)]
        if pts:
            axes[2].plot(*zip(*pts), 'o-', label=kernel)
    axes[2].set_xscale('log', base=2)
    axes[2].set_xlabel('tokens (12 heads x 64)')
    axes[2].set_ylabel('SDPA fwd+bwd TFLOP/s')
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{env.get('device_name')}  {env.get('date')}  {env.get('commit')}")
    fig.tight_layout()
    fig.savefig(os.path.join(out, PLOT_NAME), dpi=110)
    plt.close(fig)


def read_csv(path):
    import csv
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: _parse(v) for k, v in r.items() if v != ''} for r in csv.DictReader(f)]


def _parse(value):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {'True': True, 'False': False}.get(value, value)


# ---------------------------------------------------------------- main

def environment(device, cfg):
    import shutil
    import subprocess
    import timm
    commit = os.environ.get('MMPATCH_COMMIT')  # the GPU machine gets the tree without .git
    if not commit and shutil.which('git'):
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True).stdout.strip()
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'
    return dict(device_name=name, date=date.today().isoformat(), commit=commit or 'unknown',
                torch=torch.__version__, timm=timm.__version__, img_size=cfg['img_size'],
                cudnn=torch.backends.cudnn.version() if device.type == 'cuda' else None,
                matmul_n=cfg['matmul_n'])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true', help='tiny models and sizes (smoke test)')
    parser.add_argument('--sections', nargs='+', default=['ceilings', 'sdpa', 'models', 'report'],
                        choices=('ceilings', 'sdpa', 'models', 'report'))
    parser.add_argument('--patch-sizes', type=int, nargs='+', default=None,
                        help='only these rows of the grid')
    parser.add_argument('--backbones', nargs='+', default=None, help='only these backbones')
    parser.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/benchmark')
    parser.add_argument('--inputs', nargs='+', default=None,
                        help='report: folders whose CSVs are merged (default: --out)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(TINY if args.tiny else FULL)
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    env_path = os.path.join(args.out, 'env.json')
    env = json.load(open(env_path)) if os.path.exists(env_path) else {}
    if any(s != 'report' for s in args.sections):
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError('CUDA is not available; use --device cpu --tiny for a smoke test')
        env.update(environment(device, cfg))
    if 'ceilings' in args.sections:
        env['matmul_tflops'] = matmul_tflops(device, n=cfg['matmul_n'],
                                             dtype=torch.bfloat16 if device.type == 'cuda' else torch.float32)
        print(f"matmul ceiling: {env['matmul_tflops']:.1f} TFLOP/s", flush=True)
    with open(env_path, 'w') as f:
        json.dump(env, f, indent=2)
    sdpa_csv, models_csv = (os.path.join(args.out, n) for n in ('sdpa.csv', 'models.csv'))
    sdpa_rows = read_csv(sdpa_csv)
    if 'sdpa' in args.sections:
        sdpa_rows = bench_sdpa(cfg, device)
        write_csv(sdpa_csv, sdpa_rows)
        print(markdown_table(sdpa_rows, _present(SDPA_COLUMNS, sdpa_rows)), flush=True)
    model_rows = read_csv(models_csv)
    if 'models' in args.sections:
        done = {(r['backbone'], r['patch_size']) for r in model_rows}
        for patch, batch, names in cfg['grid']:
            if args.patch_sizes and patch not in args.patch_sizes:
                continue
            for name in names:
                if (args.backbones and name not in args.backbones) or (name, patch) in done:
                    continue
                row = bench_model(name, patch, batch, cfg, device, env, sdpa_rows)
                model_rows.append(row)
                print(row, flush=True)
                write_csv(models_csv, add_ratios(model_rows))  # after every row: a timeout keeps them
    if 'report' in args.sections:
        if args.inputs:
            model_rows = [r for d in args.inputs for r in read_csv(os.path.join(d, 'models.csv'))]
            sdpa_rows = [r for d in args.inputs for r in read_csv(os.path.join(d, 'sdpa.csv'))]
        write_report(args.out, env, add_ratios(model_rows), sdpa_rows)
        print(markdown_table(model_rows, [c for c in ('backbone', 'patch_size', 'batch', 'status',
              'images_per_s', 'peak_gib', 'model_tflops', 'speed_vs_timm', 'speed_vs_mmseg')
              if any(c in r for r in model_rows)]))
    return model_rows, sdpa_rows


if __name__ == '__main__':
    main()
