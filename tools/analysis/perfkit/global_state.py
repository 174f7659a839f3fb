"""Do mmpatch's backbones leave PyTorch's process-wide settings as they found them, on the device?

For each case (PatchViT with 'auto' attention: eager, compiled blocks in the modes the
benchmarks use, selective checkpointing; PatchMamba), builds the backbone, runs a few
training steps (bf16 autocast forward, backward, AdamW step, as ``benchmark.py``'s rows) and
compares ``mmpatch.utils.torch_state.torch_settings()`` before and after: SDPA priority order
and kernel flags, cuDNN / TF32 / matmul precision, dynamo / inductor / functorch
configuration, default dtype, grad and autocast modes, threads. Exits 1 if any case changed
anything (the diff is printed and written to ``global_state.json`` / ``global_state.md``).

Then the slowdown this check exists for: timm's training step alone in a fresh process
(``benchmark.py row``) against the same step in this process after all the cases above; a
ratio well under 1 means something left in the process (not a setting listed above, if the
check passed) slows the next model. The timing does not change the exit code.

CPU smoke test (the compiled cases run eagerly: PatchViT compiles its blocks on CUDA only):
    python tools/analysis/check.py global-state --device cpu --tiny --out /tmp/state
"""
import argparse
import json
import os

import torch

from mmpatch.utils.torch_state import settings_diff, torch_settings
from . import models as bench
from .utils import (BENCHMARK, check_device, device_name, free_device_memory, markdown_table,
                    run_fresh_process)

# case -> PatchViT keyword arguments (None: PatchMamba); 'auto' attention throughout
CASES = {
    'vit_eager': dict(compile_blocks=False),
    'vit_compiled': dict(compile_blocks='default'),
    'vit_cudagraphs': dict(compile_blocks='reduce-overhead'),
    'vit_checkpointed': dict(with_cp=True),
    'mamba': None,
}
STEPS = 3  # training steps per case: the first compiles, the later ones replay


def grid_batch(cfg, patch_size):
    """The benchmark grid's batch at ``patch_size`` (1 if the grid has none)."""
    return next((batch for patch, batch, _ in cfg['grid'] if patch == patch_size), 1)


def build_case(case, cfg, patch_size, device):
    """(model, features) of one case, on ``device``, in training mode."""
    if CASES[case] is None:
        model, features = bench.build_backbone('PatchMamba', cfg, patch_size, False, device)
    else:
        from mmpatch.models.backbones.patch_vit import PatchViT
        model = PatchViT(arch=cfg['arch'], patch_size=patch_size, img_size=cfg['img_size'],
                         attn_backend='auto', **CASES[case])
        features = lambda x: model(x)[-1]  # noqa: E731
    return model.to(device).train(), features


def run_case(case, cfg, patch_size, device):
    """``{setting: (before, after)}`` that ``STEPS`` training steps of one case changed."""
    before = torch_settings()
    model, features = build_case(case, cfg, patch_size, device)
    step = bench.train_step_fn(model, features, grid_batch(cfg, patch_size),
                               cfg['img_size'], device)
    for _ in range(STEPS):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    model = features = step = None
    free_device_memory(device)
    return settings_diff(before, torch_settings())


def warm_up_device(device):
    """Plain torch work on the device (matmul, SDPA, conv under autocast, backward), so that
    what CUDA's lazy initialisation sets is in the baseline, not charged to a case."""
    x = torch.randn(2, 2, 64, 16, device=device, requires_grad=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = torch.nn.functional.scaled_dot_product_attention(x, x, x)
        out = torch.nn.functional.conv2d(out, torch.randn(2, 2, 3, 3, device=device)) @ \
            torch.randn(14, 14, device=device)
    out.float().sum().backward()


def timm_rows(cfg, patch_size, args, device):
    """timm's row alone in a fresh process, and the same row in this process (after the cases)."""
    batch = grid_batch(cfg, patch_size)
    alone = run_fresh_process(BENCHMARK, ['row', '--backbone', 'timm', '--patch-size', patch_size,
                                          '--batch', batch] + bench.budget_argv(args))
    here = bench.bench_model('timm', patch_size, batch, cfg, device, {}, [])
    a, b = alone.get('row', alone).get('images_per_s'), here.get('images_per_s')
    ratio = b / a if isinstance(a, float) and isinstance(b, float) else None
    return dict(patch_size=patch_size, batch=batch, timm_alone_img_s=a, alone_pid=alone.get(
        'row', {}).get('pid'), timm_after_mmpatch_img_s=b, after_pid=here['pid'],
        after_over_alone=ratio, status=alone.get('status', 'ok'))


def report(diffs, timing, env):
    """Markdown: each case's changed settings (or 'unchanged'), then the timm timings."""
    lines = [f"# Process-wide PyTorch settings after mmpatch's backbones: {env['device']}, "
             f"torch {env['torch']}", '']
    for case, diff in diffs.items():
        lines.append(f'- `{case}`: ' + ('unchanged' if not diff else ', '.join(
            f'`{k}` {before!r} -> {after!r}' for k, (before, after) in diff.items())))
    if timing:
        lines += ['', "## timm's training step: alone in a fresh process vs after the cases in "
                      'one process', '', markdown_table(timing)]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='check.py global-state',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--cases', nargs='+', choices=tuple(CASES), default=list(CASES))
    parser.add_argument('--patch-size', type=int, default=16,
                        help="the cases' patch size (batch: the benchmark grid's)")
    parser.add_argument('--timing-patch-sizes', type=int, nargs='*', default=[16],
                        help="timm's timed rows (none: no timing)")
    bench.add_budget_args(parser)
    parser.set_defaults(out=os.environ.get('OUT') or 'work_dirs/global_state')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg, device = bench.config_from(args), torch.device(args.device)
    check_device(device)
    os.makedirs(args.out, exist_ok=True)
    warm_up_device(device)
    start = torch_settings()
    diffs = {}
    for case in args.cases:
        diffs[case] = {k: [repr(v) for v in pair] for k, pair in
                       run_case(case, cfg, args.patch_size, device).items()}
        print(f'{case}: ' + (json.dumps(diffs[case]) if diffs[case] else 'unchanged'), flush=True)
    diffs['all cases'] = {k: [repr(v) for v in pair]
                          for k, pair in settings_diff(start, torch_settings()).items()}
    timing = [timm_rows(cfg, p, args, device) for p in args.timing_patch_sizes]
    for row in timing:
        print(f"timm p{row['patch_size']}: alone {row['timm_alone_img_s']} img/s, after mmpatch "
              f"in one process {row['timm_after_mmpatch_img_s']} img/s "
              f"(ratio {row['after_over_alone']})", flush=True)
    env = dict(device=device_name(device), torch=torch.__version__)
    with open(os.path.join(args.out, 'global_state.json'), 'w') as f:
        json.dump(dict(env=env, diffs=diffs, timing=timing), f, indent=2)
    text = report(diffs, timing, env)
    with open(os.path.join(args.out, 'global_state.md'), 'w') as f:
        f.write(text)
    print(text, flush=True)
    changed = sorted(case for case, diff in diffs.items() if diff)
    print('global state: ' + (f'CHANGED by {changed}' if changed else 'unchanged by every case'))
    return 1 if changed else 0, diffs, timing


def exit_code_main(argv=None):
    """``check.py global-state``: ``main``'s exit code (1 where a case changed a setting)."""
    return main(argv)[0]
