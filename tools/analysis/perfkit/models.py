"""``benchmark.py models``: training-step speed, memory and FLOP efficiency of the backbones.

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
  (``mmseg.models.VisionTransformer``), 'PatchMamba' (compiled blocks around mamba_ssm's
  kernels), 'PatchMamba-eager' and any registry name. PatchMamba rows also get
  ``speed_vs_PatchViT`` (images/s over PatchViT's at the same patch size and batch).
  Out-of-memory is a row marked OOM.
- ``report``: CSV files of one or more runs -> ``benchmark.md`` and ``benchmark.png``.

Clean rows: the orchestrating process never initialises CUDA. The ceilings and SDPA
sections run in one child process (``benchmark.py kernels``), and every (backbone, patch
size) row in a fresh one of its own (``benchmark.py row``), which prints the row as one JSON
line (its ``pid`` included): a model timed after another in one process inherits its
compiled code, allocator, flags and warm-up. The timm row at the first patch size is the
anchor and runs first; ``--anchor-repeat`` times it again, alone, after the other rows, and
the report prints ``anchor check: timm pP A vs B img/s, within X%: ok`` (or ``FAILED (>3%)``).
Every ratio is against timm's row, itself measured alone.
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

from mmpatch.models.layers.sdpa_backend import (choose_sdpa_backends, sdpa_backend_context)
from mmpatch.utils.flops import count_flops_by_op, split_attention_flops
from .utils import (BENCHMARK, OOM, attention_flops, check_device, free_device_memory,
                    fresh_rows, is_oom, markdown_table, matmul_tflops, median_step_seconds,
                    peak_gib, print_result, profile_steps, read_csv, relative_error,
                    run_fresh_process, sdpa_step, write_csv)

VIT_B = dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.)
# (patch, batch, backbones): ViT-B / Adventurer-B, 512 x 512 crops.
FULL_GRID = [
    (16, 16, ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg', 'PatchMamba', 'PatchMamba-eager')),
    (8, 4, ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg', 'PatchMamba', 'PatchMamba-eager')),
    (4, 1, ('PatchViT', 'timm', 'mmseg', 'PatchMamba', 'PatchMamba-eager')),
    (2, 1, ('PatchViT', 'timm', 'mmseg', 'PatchMamba')),
    (1, 1, ('PatchViT', 'PatchMamba')),
]
FULL = dict(arch=VIT_B, mamba_arch='base', img_size=512, grid=FULL_GRID, warmup=3,
            budget_s=3.0, max_steps=20, cp_from_tokens=100_000,
            sdpa_tokens=(1024, 4096, 16384, 65536, 262144), sdpa_heads=12, sdpa_head_dim=64,
            sdpa_tokens_per_batch=16384, sdpa_max_step_s=5.0, matmul_n=8192)
TINY = dict(arch=dict(embed_dims=64, num_layers=2, num_heads=2, mlp_ratio=4.),
            mamba_arch=dict(embed_dims=64, num_layers=2, headdim=16, d_state=16, chunk_size=16),
            img_size=32, grid=[(16, 2, ('PatchViT', 'timm', 'mmseg', 'PatchMamba',
                                        'PatchMamba-eager')),
                               (4, 1, ('PatchViT', 'PatchMamba'))],
            warmup=1, budget_s=0.05, max_steps=2, cp_from_tokens=40,
            sdpa_tokens=(64, 256), sdpa_heads=2, sdpa_head_dim=16, sdpa_tokens_per_batch=256,
            sdpa_max_step_s=5.0, matmul_n=256)
VIT_FAMILY = ('PatchViT', 'PatchViT-eager', 'timm', 'mmseg')  # the same ViT, compared by ratios
MAMBA_FAMILY = ('PatchMamba', 'PatchMamba-eager')  # compared with PatchViT
SDPA_KERNELS = ('cudnn', 'flash', 'efficient', 'default', 'auto')
ANCHOR = 'timm'  # the row every ratio is taken against, and whose repeat checks the run
ANCHOR_REPEAT = 'anchor-repeat'  # ``role`` of the anchor's second measurement
ANCHOR_TOLERANCE = 0.03
CHECK_QUERIES = 256  # queries checked against math above the full-check size
FULL_CHECK_TOKENS = 4096


# ---------------------------------------------------------------- models

def compiles(name, with_cp, device):
    """Ours compiles its blocks on CUDA, except with checkpointing (long sequences), where
    attention is > 95% of the FLOPs and eager blocks keep it out of the recomputation."""
    return name in ('PatchViT', 'PatchMamba') and device.type == 'cuda' and not with_cp


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
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    extra = {}
    if name in MAMBA_FAMILY:
        arch = cfg['mamba_arch']
        extra = dict(compile_blocks=compiles(name, with_cp, device))
        name = 'PatchMamba'
    with DefaultScope.overwrite_default_scope('mmseg'):  # whatever scope the caller has set
        model = MODELS.build(dict(type=name, arch=arch, patch_size=patch_size, img_size=img,
                                  with_cp=with_cp, **extra))
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
    family = 'PatchViT' if name in VIT_FAMILY else 'PatchMamba' if name in MAMBA_FAMILY else name
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


def bench_model(name, patch_size, batch, cfg, device, ceilings, sdpa_rows, profile_path=None):
    """One row: a training step of backbone ``name`` timed in this process (see the module
    docstring for the columns); ``pid`` names the process, which ran no other row.
    ``profile_path``: also profile 3 steps after the timed ones (``profile_steps``) into it."""
    img = cfg['img_size']
    tokens = math.ceil(img / patch_size) ** 2
    with_cp = tokens >= cfg['cp_from_tokens']
    row = dict(backbone=name, patch_size=patch_size, img_size=img, batch=batch, tokens=tokens,
               with_cp=with_cp, compiled=compiles(name, with_cp, device), pid=os.getpid())
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
        if profile_path:
            profile_steps(step, device, profile_path, f'{name} p{patch_size} batch {batch}')
    except Exception as err:  # noqa: BLE001  (recorded in the row and printed in full)
        if is_oom(err):
            row.update(status=OOM, peak_gib=OOM)
        else:  # one broken backbone must not cost the other rows of a run
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
    """images/s of each ViT row over timm's (and mmseg's) at the same patch size and batch.

    The references are the grid's own rows (each measured alone in its process); the
    anchor's repeat is a check of the run, neither a reference nor given ratios.
    """
    grid = [r for r in rows if not r.get('role')]
    ref = {(r['backbone'], r['patch_size'], r['batch']): r.get('images_per_s') for r in grid}
    for r in grid:
        vit = ref.get(('PatchViT', r['patch_size'], r['batch']))
        if r['backbone'] in MAMBA_FAMILY and isinstance(r.get('images_per_s'), float) \
                and isinstance(vit, float):
            r['speed_vs_PatchViT'] = r['images_per_s'] / vit
        if r['backbone'] not in VIT_FAMILY:
            continue
        for other in ('timm', 'mmseg'):
            theirs = ref.get((other, r['patch_size'], r['batch']))
            ours = r.get('images_per_s')
            if r['backbone'] != other and isinstance(ours, float) and isinstance(theirs, float):
                r[f'speed_vs_{other}'] = ours / theirs
            elif r['backbone'] != other and isinstance(ours, float) and theirs is None and \
                    any(x['backbone'] == other and x['patch_size'] == r['patch_size']
                        and x.get('status') == OOM for x in grid):
                r[f'speed_vs_{other}'] = f'{other} OOM'
    return rows


def anchor_check(rows, tolerance=ANCHOR_TOLERANCE):
    """'anchor check: ...' comparing the anchor row with its repeat (None without a repeat).

    Both are timm alone in a fresh process, first and last in the run: if they differ by
    more than ``tolerance`` the GPU's speed drifted during the run, and no ratio of it holds.
    """
    repeats = [r for r in rows if r.get('role') == ANCHOR_REPEAT]
    if not repeats:
        return None
    again = repeats[-1]
    first = next((r for r in rows if r['backbone'] == ANCHOR and not r.get('role')
                  and (r['patch_size'], r['batch']) == (again['patch_size'], again['batch'])),
                 None)
    a, b = (None if r is None else r.get('images_per_s') for r in (first, again))
    head = f"anchor check: {ANCHOR} p{again['patch_size']}"
    if not (isinstance(a, float) and isinstance(b, float)):
        return f'{head} {a} vs {b} img/s: FAILED (not measured twice)'
    spread = abs(b - a) / a
    verdict = 'ok' if spread <= tolerance else f'FAILED (>{tolerance:.0%})'
    return f'{head} {a:.4g} vs {b:.4g} img/s, within {spread:.1%}: {verdict}'


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
MODEL_COLUMNS = ('backbone', 'role', 'patch_size', 'batch', 'tokens', 'with_cp', 'compiled',
                 'status', 'ms_per_step',
                 'images_per_s', 'tokens_per_s', 'peak_gib', 'gflops_fwd_per_img',
                 'attention_share', 'model_tflops', 'frac_matmul_ceiling',
                 'frac_attn_aware_ceiling', 'speed_vs_timm', 'speed_vs_mmseg', 'speed_vs_PatchViT',
                 'pid')
SDPA_COLUMNS = ('tokens', 'batch', 'kernel', 'status', 'ms', 'tflops', 'err_out', 'err_grad',
                'auto_order')


def write_report(out, env, model_rows, sdpa_rows):
    check = anchor_check(model_rows)
    lines = [f"# Training-step benchmark: {env.get('device_name')}, {env.get('date')}, "
             f"commit {env.get('commit')}", '',
             f"torch {env.get('torch')}, timm {env.get('timm')}, bf16 autocast, fused AdamW; "
             f"crop {env.get('img_size')}; matmul ceiling "
             f"{_fmt(env.get('matmul_tflops'))} TFLOP/s (bf16 {env.get('matmul_n')}^3).", '',
             'Each row ran alone in a fresh process (`pid`); `speed_vs_timm` is against the '
             'timm row, itself alone in its process.' + (f' {check}.' if check else ''), '',
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
    ok = [r for r in model_rows if r.get('status') == 'ok' and not r.get('role')]
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


# ---------------------------------------------------------------- main

def host_environment(cfg):
    """What the orchestrating process knows without touching the device."""
    import shutil
    import subprocess
    import timm
    commit = os.environ.get('MMPATCH_COMMIT')  # for a tree copied without .git
    if not commit and shutil.which('git'):
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True).stdout.strip()
    return dict(date=date.today().isoformat(), commit=commit or 'unknown',
                torch=torch.__version__, timm=timm.__version__, img_size=cfg['img_size'],
                matmul_n=cfg['matmul_n'])


def device_environment(device):
    """The device's name and cuDNN version (a child process: initialises CUDA)."""
    if device.type != 'cuda':
        return dict(device_name=platform.processor() or 'cpu', cudnn=None)
    return dict(device_name=torch.cuda.get_device_name(device),
                cudnn=torch.backends.cudnn.version())


def add_budget_args(parser):
    """Options shared by the orchestrator and its children (passed on unchanged)."""
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true', help='tiny models and sizes (smoke test)')
    parser.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/benchmark')
    parser.add_argument('--budget-s', type=float, default=None,
                        help='seconds of timed steps per row (default: the grid\'s)')
    parser.add_argument('--max-steps', type=int, default=None, help='timed steps per row at most')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up steps per row')


def budget_argv(args):
    """``add_budget_args``' options of ``args`` as a child's argument list."""
    argv = ['--device', args.device, '--out', args.out] + (['--tiny'] if args.tiny else [])
    for flag, value in (('--budget-s', args.budget_s), ('--max-steps', args.max_steps),
                        ('--warmup', args.warmup)):
        argv += [] if value is None else [flag, value]
    return argv


def config_from(args):
    """The grid's settings (TINY or FULL) with the command line's overrides."""
    cfg = dict(TINY if args.tiny else FULL)
    for key in ('budget_s', 'max_steps', 'warmup'):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    return cfg


def read_env(out):
    path = os.path.join(out, 'env.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_env(out, env):
    with open(os.path.join(out, 'env.json'), 'w') as f:
        json.dump(env, f, indent=2)


def row_main(argv):
    """``benchmark.py row``: one (backbone, patch size, batch) row in this process."""
    parser = argparse.ArgumentParser(prog='benchmark.py row', description=row_main.__doc__)
    parser.add_argument('--backbone', required=True)
    parser.add_argument('--patch-size', type=int, required=True)
    parser.add_argument('--batch', type=int, required=True)
    parser.add_argument('--role', default=None, help='recorded in the row (e.g. anchor-repeat)')
    parser.add_argument('--profile', action='store_true',
                        help='also profile 3 steps after the timed ones: '
                             '<out>/profile_<backbone>_p<patch>.txt (GPU time by kernel class, '
                             'the ops with the most self GPU and CPU time)')
    add_budget_args(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    check_device(device)
    env = read_env(args.out)  # the ceilings, if measured
    profile_path = os.path.join(args.out, f'profile_{args.backbone}_p{args.patch_size}.txt') \
        if args.profile else None
    row = bench_model(args.backbone, args.patch_size, args.batch, config_from(args), device, env,
                      read_csv(os.path.join(args.out, 'sdpa.csv')), profile_path)
    if args.role:
        row['role'] = args.role
    print_result(dict(row=row, env=device_environment(device)))
    return row


def kernels_main(argv):
    """``benchmark.py kernels``: matmul ceiling and SDPA kernels, into env.json and sdpa.csv."""
    parser = argparse.ArgumentParser(prog='benchmark.py kernels', description=kernels_main.__doc__)
    parser.add_argument('--sections', nargs='+', default=['ceilings', 'sdpa'],
                        choices=('ceilings', 'sdpa'))
    add_budget_args(parser)
    args = parser.parse_args(argv)
    cfg, device = config_from(args), torch.device(args.device)
    check_device(device)
    os.makedirs(args.out, exist_ok=True)
    env = dict(read_env(args.out), **device_environment(device), kernels_pid=os.getpid())
    if 'ceilings' in args.sections:
        dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
        env['matmul_tflops'] = matmul_tflops(device, n=cfg['matmul_n'], dtype=dtype)
        print(f"matmul ceiling: {env['matmul_tflops']:.1f} TFLOP/s", flush=True)
    write_env(args.out, env)
    if 'sdpa' in args.sections:
        sdpa_rows = bench_sdpa(cfg, device)
        write_csv(os.path.join(args.out, 'sdpa.csv'), sdpa_rows)
        print(markdown_table(sdpa_rows, _present(SDPA_COLUMNS, sdpa_rows)), flush=True)
    print_result(env)
    return env


def planned_rows(grid, patch_sizes=None, backbones=None, anchor_repeat=False):
    """(backbone, patch, batch, role) in run order: the anchor (timm at the first selected
    patch size that has it) first, the grid's other rows, then the anchor's repeat if asked."""
    rows = [(name, patch, batch, None) for patch, batch, names in grid for name in names
            if (not patch_sizes or patch in patch_sizes) and (not backbones or name in backbones)]
    anchor = next((r for r in rows if r[0] == ANCHOR), None)
    if anchor is None:
        return rows
    rows = [anchor] + [r for r in rows if r != anchor]
    return rows + ([anchor[:3] + (ANCHOR_REPEAT,)] if anchor_repeat else [])


def run_rows(args, model_rows, env):
    """Each planned row not yet in ``model_rows`` in a fresh process; the CSV after each."""
    cfg = config_from(args)
    models_csv = os.path.join(args.out, 'models.csv')
    done = {(r['backbone'], r['patch_size'], r.get('role')) for r in model_rows}
    plans = []
    for name, patch, batch, role in planned_rows(cfg['grid'], args.patch_sizes, args.backbones,
                                                 args.anchor_repeat):
        if (name, patch, role) in done:
            continue
        argv = ['row', '--backbone', name, '--patch-size', patch, '--batch', batch]
        argv += (['--role', role] if role else []) + budget_argv(args)
        plans.append((argv, dict(backbone=name, patch_size=patch, batch=batch,
                                 **(dict(role=role) if role else {}))))
    new_rows, child_env = fresh_rows(  # the CSV after every row: a timeout keeps them
        BENCHMARK, plans, timeout=args.row_timeout,
        on_row=lambda rows: write_csv(models_csv, add_ratios(model_rows + rows)))
    env.update({k: v for k, v in child_env.items() if env.get(k) is None})
    return model_rows + new_rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='benchmark.py models', description=__doc__.split('\n\n')[0],
        epilog='What the run starts in fresh processes: benchmark.py row ..., '
               'benchmark.py kernels ... (each with --help).')
    parser.add_argument('--sections', nargs='+', default=['ceilings', 'sdpa', 'models', 'report'],
                        choices=('ceilings', 'sdpa', 'models', 'report'))
    parser.add_argument('--patch-sizes', type=int, nargs='+', default=None,
                        help='only these rows of the grid')
    parser.add_argument('--backbones', nargs='+', default=None, help='only these backbones')
    parser.add_argument('--anchor-repeat', action='store_true',
                        help=f'time the anchor ({ANCHOR} at the first patch size) again after '
                             f'the other rows and check the two agree within '
                             f'{ANCHOR_TOLERANCE:.0%}%')
    parser.add_argument('--row-timeout', type=float, default=None,
                        help='seconds after which a row\'s process is killed (row kept as error)')
    parser.add_argument('--inputs', nargs='+', default=None,
                        help='report: folders whose CSVs are merged (default: --out)')
    add_budget_args(parser)
    return parser.parse_args(argv)


def report_main(argv):
    """``benchmark.py report``: ``models --sections report``."""
    return main(['--sections', 'report'] + list(argv))


def main(argv=None):
    """The whole run; this process orchestrates and never touches the device."""
    args = parse_args(argv)
    cfg = config_from(args)
    os.makedirs(args.out, exist_ok=True)
    env = read_env(args.out)
    if any(s != 'report' for s in args.sections):
        env.update(host_environment(cfg))
        write_env(args.out, env)
    kernels = [s for s in args.sections if s in ('ceilings', 'sdpa')]
    if kernels:
        result = run_fresh_process(BENCHMARK,
                                   ['kernels', '--sections', *kernels] + budget_argv(args))
        if 'status' in result:
            print(f"kernels: {result['status']}", flush=True)
        env = read_env(args.out)
    model_rows = read_csv(os.path.join(args.out, 'models.csv'))
    if 'models' in args.sections:
        model_rows = run_rows(args, model_rows, env)
        write_env(args.out, env)
    sdpa_rows = read_csv(os.path.join(args.out, 'sdpa.csv'))
    if 'report' in args.sections:
        if args.inputs:
            model_rows = [r for d in args.inputs for r in read_csv(os.path.join(d, 'models.csv'))]
            sdpa_rows = [r for d in args.inputs for r in read_csv(os.path.join(d, 'sdpa.csv'))]
        write_report(args.out, env, add_ratios(model_rows), sdpa_rows)
        print(markdown_table(model_rows, [c for c in ('backbone', 'role', 'patch_size', 'batch',
              'status', 'images_per_s', 'peak_gib', 'model_tflops', 'speed_vs_timm',
              'speed_vs_mmseg', 'speed_vs_PatchViT') if any(c in r for r in model_rows)]))
    check = anchor_check(model_rows)
    if check:
        print(check, flush=True)
    return model_rows, sdpa_rows
