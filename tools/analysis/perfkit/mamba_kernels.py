"""Check mamba_ssm's kernels against mmpatch's PyTorch SSD, then time PatchMamba.

1. Parity (CUDA with mamba_ssm only): the same ``Mamba2Mixer`` weights run with
   ``impl='torch'`` and ``impl='mamba_ssm'`` in float32; the output, the input
   gradient and every parameter gradient must agree to a relative error
   ``||a - b|| / ||b|| < 1e-3``. Both are also compared with the PyTorch path in
   float64. The same is done for a small whole PatchMamba, and for the official
   golden forward when ``--golden`` points to it, and the small PatchMamba with
   ``compile_blocks=True`` against itself eager (both with the kernels). Triton's float32 dot products
   run in IEEE float32 here (``TRITON_F32_DEFAULT=ieee``; ``--f32-dots tf32`` for
   the kernels' default): with TF32 the kernels' own error in the dt_bias and
   A_log gradients can exceed the tolerance, while the PyTorch path stays near float64.
2. Benchmark: PatchMamba (base) at 512 x 512, bf16 autocast, batch 1, for each
   patch size: forward + backward of the backbone (no optimizer), median of
   timed steps after warm-up (CUDA events), peak allocated memory; activation
   checkpointing (``with_cp``) when a crop has more than ``--cp-tokens`` tokens.
   An out-of-memory step is reported as OOM.

Writes ``mamba_kernels.{json,csv,md}`` to ``--out`` (default ``$OUT``, else
``work_dirs/mamba_kernels``) and prints the Markdown.

``check.py mamba-kernels --device cpu --tiny``: a CPU smoke test (no kernel comparison).
"""
import argparse
import contextlib
import copy
import csv
import gc
import json
import os
import statistics

import torch

from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.layers.mamba2_mixer import Mamba2Mixer, mamba_ssm_kernels, set_mamba_impl
from .utils import Timer, device_name

FULL = dict(arch='base', img_size=512, patch_sizes=(16, 8, 4, 2, 1), steps=10, warmup=3,
            parity_lengths=(259, 1031, 4099))
TINY = dict(arch=dict(embed_dims=32, num_layers=2, d_state=8, headdim=16), img_size=32,
            patch_sizes=(16, 8, 4), steps=2, warmup=1, parity_lengths=(37,))
TOLERANCE = 1e-3
OUT_NAME = 'mamba_kernels'


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def perturbed_mixer(d_model, device, seed=0):
    """A Mamba2Mixer whose vectors are moved off their init so that each one matters."""
    torch.manual_seed(seed)
    mixer = Mamba2Mixer(d_model).to(device)
    with torch.no_grad():
        for p in (mixer.conv1d.bias, mixer.D, mixer.norm.weight, mixer.A_log, mixer.dt_bias):
            p.add_(torch.randn_like(p) * 0.2)
    return mixer


def forward_backward(module, inputs, impl, out_weight):
    """Output and gradients (of the input and of every parameter) of ``sum(out * out_weight)``."""
    set_mamba_impl(module, impl)
    module.zero_grad(set_to_none=True)
    inputs = inputs.detach().clone().requires_grad_(True)
    out = _first(module(inputs))
    (out.double() * out_weight).sum().backward()
    grads = {'input': inputs.grad}
    grads.update({n: p.grad for n, p in module.named_parameters()})
    return out.detach(), grads


def compare(name, module, inputs):
    """Rows of relative errors: kernels vs PyTorch (fp32), and each vs PyTorch in float64."""
    reference = copy.deepcopy(module).double()
    set_mamba_impl(reference, 'torch')
    with torch.no_grad():
        probe = _first(reference(inputs.double()))
    weight = torch.randn(probe.shape, dtype=torch.float64, device=probe.device,
                         generator=torch.Generator(probe.device).manual_seed(1))
    out_r, grads_r = forward_backward(reference, inputs.double(), 'torch', weight)
    out_t, grads_t = forward_backward(module, inputs, 'torch', weight)
    out_k, grads_k = forward_backward(module, inputs, 'mamba_ssm', weight)
    pairs = [('output', out_k, out_t, out_r)]
    pairs += [(f'grad {n}', grads_k[n], grads_t[n], grads_r[n]) for n in grads_t]
    rows = []
    for what, k, t, r in pairs:
        err = rel_err(k, t)
        rows.append(dict(check=name, tensor=what, kernel_vs_torch=err,
                         kernel_vs_fp64=rel_err(k, r), torch_vs_fp64=rel_err(t, r),
                         passed=err < TOLERANCE))
    return rows


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@contextlib.contextmanager
def triton_f32_dots(mode):
    """Set Triton's float32 dot precision ('ieee' or 'tf32') for kernels compiled inside."""
    old = os.environ.get('TRITON_F32_DEFAULT')
    os.environ['TRITON_F32_DEFAULT'] = mode
    try:
        yield
    finally:
        if old is None:
            del os.environ['TRITON_F32_DEFAULT']
        else:
            os.environ['TRITON_F32_DEFAULT'] = old


def run_parity(cfg, device, golden_path, f32_dots):
    """All parity rows, or a reason (str) why they were skipped."""
    if device.type != 'cuda':
        return 'skipped: the kernel comparison needs a CUDA device (ran with --device cpu)'
    kernels = mamba_ssm_kernels()
    if isinstance(kernels, str):
        return f'skipped: {kernels}'
    with triton_f32_dots(f32_dots):
        return _parity_rows(cfg, device, golden_path)


def _parity_rows(cfg, device, golden_path):
    rows = []
    mixer = perturbed_mixer(256, device)
    for length in cfg['parity_lengths']:
        u = torch.randn(2, length, 256, device=device)
        rows += compare(f'Mamba2Mixer d256 L{length}', mixer, u)
    torch.manual_seed(0)
    small = PatchMamba(arch=dict(embed_dims=128, num_layers=4), patch_size=4, img_size=64).to(device)
    images = torch.randn(2, 3, 64, 64, device=device)
    rows += compare('PatchMamba d128x4 p4 64px', small, images)
    rows += compiled_rows(small, images)
    if golden_path:
        rows += golden_rows(golden_path, device)
    return rows


def compiled_rows(model, inputs):
    """Relative errors of ``compile_blocks=True`` against the same model eager (kernels)."""
    compiled = copy.deepcopy(model).train()
    compiled.compile_blocks = 'default'
    probe = _first(model(inputs)).detach()
    weight = torch.randn(probe.shape, dtype=torch.float64, device=probe.device,
                         generator=torch.Generator(probe.device).manual_seed(2))
    out_e, grads_e = forward_backward(model.train(), inputs, 'mamba_ssm', weight)
    out_c, grads_c = forward_backward(compiled, inputs, 'mamba_ssm', weight)
    rows = []
    for what, c, e in [('output', out_c, out_e)] + [(f'grad {n}', grads_c[n], grads_e[n])
                                                    for n in grads_e]:
        err = rel_err(c, e)
        rows.append(dict(check='PatchMamba compiled vs eager', tensor=what, kernel_vs_torch=err,
                         kernel_vs_fp64=None, torch_vs_fp64=None, passed=err < TOLERANCE))
    return rows


def golden_rows(path, device):
    """The official golden forward (float32) through both implementations."""
    from mmpatch.models.weights.adventurer_convert import adventurer_to_patch_mamba
    from mmpatch.models.weights.checkpoint_filter import load_state_dict_strict
    golden = torch.load(path, map_location='cpu', weights_only=False)
    cfg = golden['config']
    model = PatchMamba(arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth']),
                       patch_size=cfg['patch_size'], img_size=cfg['img_size']).eval()
    load_state_dict_strict(model, adventurer_to_patch_mamba(golden['state_dict'], model))
    model.to(device)
    rows = []
    for impl in ('torch', 'mamba_ssm'):
        set_mamba_impl(model, impl)
        with torch.no_grad():
            tokens, _ = model.forward_tokens(golden['input'].to(device))
        err = rel_err(tokens.cpu(), golden['tokens'])
        rows.append(dict(check=f'golden official forward ({impl})', tensor='tokens',
                         kernel_vs_torch=None, kernel_vs_fp64=None, torch_vs_fp64=None,
                         vs_golden=err, passed=err < TOLERANCE))
    return rows


def measure(cfg, patch_size, device, impl, cp_tokens):
    """One benchmark row: median step seconds and peak memory, or OOM."""
    side = -(-cfg['img_size'] // patch_size)
    tokens = side * side + 1
    with_cp = tokens > cp_tokens
    row = dict(patch_size=patch_size, tokens=tokens, with_cp=with_cp, impl=impl)
    model = None
    try:
        model = PatchMamba(arch=cfg['arch'], patch_size=patch_size, img_size=cfg['img_size'],
                           with_cp=with_cp, mamba_impl=impl).to(device).train()
        row['resolved_impl'] = model.layers[0].mixer.resolved_impl(torch.empty(0, device=device))
        images = torch.randn(cfg['batch'], 3, cfg['img_size'], cfg['img_size'], device=device)
        amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == 'cuda')

        def step():
            with torch.autocast(**amp):
                out = model(images)[0]
            out.float().square().mean().backward()
            model.zero_grad(set_to_none=True)

        if device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(cfg['warmup']):
            step()
        timer = Timer(device)
        for _ in range(cfg['steps']):
            timer.mark()
            step()
            timer.mark()
        seconds = statistics.median(timer.step_seconds())
        row.update(status='ok', step_ms=round(seconds * 1e3, 2))
        if device.type == 'cuda':
            row['peak_mem_gib'] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            row['peak_above_model_gib'] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
    except torch.cuda.OutOfMemoryError:
        row.update(status='OOM')
    finally:
        del model
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return row


def to_markdown(report):
    lines = [f"# mamba_kernels ({report['device']})", '']
    parity = report['parity']
    lines.append('## Parity: mamba_ssm kernels vs PyTorch SSD (float32, Triton float32 dots: '
                 f"{report['f32_dots']})")
    lines.append('')
    if isinstance(parity, str):
        lines.append(parity)
    else:
        lines.append(f"All within {TOLERANCE:g}: **{all(r['passed'] for r in parity)}**")
        lines += ['', '| check | tensor | kernel vs torch | kernel vs fp64 | torch vs fp64 | vs golden | ok |',
                  '|---|---|---|---|---|---|---|']
        for r in parity:
            cells = [_fmt(r.get(k)) for k in ('kernel_vs_torch', 'kernel_vs_fp64', 'torch_vs_fp64',
                                              'vs_golden')]
            lines.append(f"| {r['check']} | {r['tensor']} | " + ' | '.join(cells) +
                         f" | {'yes' if r['passed'] else 'NO'} |")
    bench = report['benchmark']
    lines += ['', f"## PatchMamba {report['arch']} at {report['img_size']}px, batch {report['batch']}, "
                  f"{report['precision']}: forward + backward", '',
              '| patch | tokens | with_cp | impl | step (ms) | peak mem (GiB) | above model (GiB) |',
              '|---|---|---|---|---|---|---|']
    for r in bench:
        step = r.get('step_ms') if r['status'] == 'ok' else r['status']
        lines.append(f"| {r['patch_size']} | {r['tokens']} | {r['with_cp']} | "
                     f"{r.get('resolved_impl', r['impl'])} | {step} | {_fmt(r.get('peak_mem_gib'))} | "
                     f"{_fmt(r.get('peak_above_model_gib'))} |")
    return '\n'.join(lines) + '\n'


def _fmt(value):
    if value is None:
        return '-'
    return f'{value:.2e}' if isinstance(value, float) and value < 0.01 else str(value)


def write_report(report, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f'{OUT_NAME}.json'), 'w') as f:
        json.dump(report, f, indent=2)
    columns = ['patch_size', 'tokens', 'with_cp', 'impl', 'resolved_impl', 'status', 'step_ms',
               'peak_mem_gib', 'peak_above_model_gib']
    with open(os.path.join(out_dir, f'{OUT_NAME}.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(report['benchmark'])
    markdown = to_markdown(report)
    with open(os.path.join(out_dir, f'{OUT_NAME}.md'), 'w') as f:
        f.write(markdown)
    return markdown


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='check.py mamba-kernels',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--tiny', action='store_true', help='a tiny model and crop (smoke test)')
    parser.add_argument('--out', default=os.environ.get('OUT') or f'work_dirs/{OUT_NAME}')
    parser.add_argument('--patch-sizes', type=int, nargs='+', default=None)
    parser.add_argument('--img-size', type=int, default=None)
    parser.add_argument('--batch', type=int, default=1, help='benchmark batch size')
    parser.add_argument('--steps', type=int, default=None, help='timed steps per patch size')
    parser.add_argument('--warmup', type=int, default=None)
    parser.add_argument('--impl', default='auto', choices=('auto', 'torch', 'mamba_ssm'),
                        help='mixer implementation for the benchmark')
    parser.add_argument('--cp-tokens', type=int, default=16385,
                        help='use with_cp when a crop has more tokens than this')
    parser.add_argument('--f32-dots', default='ieee', choices=('ieee', 'tf32'),
                        help="Triton's float32 dot precision during the parity check")
    parser.add_argument('--golden', default=None,
                        help='official golden .pt file, checked through both implementations')
    parser.add_argument('--skip-parity', action='store_true')
    parser.add_argument('--skip-benchmark', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    cfg = dict(TINY if args.tiny else FULL, batch=args.batch)
    for key in ('patch_sizes', 'img_size', 'steps', 'warmup'):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.skip_parity:
        parity = 'skipped: --skip-parity'
    else:
        parity = run_parity(cfg, device, args.golden, args.f32_dots)
    if isinstance(parity, str):
        print(f'parity: {parity}')
    patch_sizes = () if args.skip_benchmark else cfg['patch_sizes']
    bench = [measure(cfg, p, device, args.impl, args.cp_tokens) for p in patch_sizes]
    report = dict(device=device_name(device),
                  torch=torch.__version__, arch=str(cfg['arch']), img_size=cfg['img_size'],
                  precision='bf16 autocast' if device.type == 'cuda' else 'float32',
                  batch=cfg['batch'], steps=cfg['steps'], warmup=cfg['warmup'],
                  f32_dots=args.f32_dots, parity=parity, benchmark=bench)
    print(write_report(report, args.out))
    if not isinstance(parity, str) and not all(r['passed'] for r in parity):
        raise SystemExit(f'parity FAILED (tolerance {TOLERANCE:g}); see the table above')
    return report

