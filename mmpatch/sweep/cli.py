"""The decoder-dependence sweep: train + test every (config, seed) cell, then the report.

With no arguments it runs the toy default: a toy-size ViT on the toy set at p in {8, 4, 2},
linear head and UperNet, seeds 0 1 2, two cells at a time on one thread each (CPU).

Each config's task is its default_scope: 'mmseg' cells (segmentation) compare decode heads
(linear, upernet) on mIoU, 'mmdet' cells (detection) compare necks (simple, multidepth: the
simple pyramid from the last block, a pyramid from several depths) on COCO bbox AP. A sweep may
hold both; the report has a part, a CSV and a plot per task.

    python tools/sweep.py                                   # the toy default (make demo)
    python tools/sweep.py --iters-scale 2                   # the same with the schedule doubled
    python tools/sweep.py --config-dir configs/ade20k --backbones vit_b adventurer_b \\
        --patch-sizes 16 8 4 2 --heads linear upernet --seeds 0 1 2 --gpus 8
    python tools/sweep.py --config-dir configs/toy_det --backbones vit_t --patch-sizes 8 4 \\
        --heads simple multidepth --seeds 0 1                # detection (--necks is --heads)
    python tools/sweep.py configs/toy/vit_t_p8_linear.py configs/toy/vit_t_p8_upernet.py
    python tools/sweep.py --collect-only --work-dir work_dirs/sweep_toy

Each cell is ``<work dir>/<config name>/seed<k>``. Finished cells (``done.json``) are skipped,
so a sweep that was stopped resumes; a half-trained cell resumes from its last checkpoint. The
report (results.csv, results.md with the verdicts, results.png) is rewritten after every
finished cell, so a sweep cut short leaves the report of the cells it finished (the rest named
under it). docs/segmentation.md ("Reading a sweep") says how the intervals and verdicts are made,
docs/detection.md ("Sweep") how the detection verdicts read.
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmpatch.apis.errors import fail  # the tools' one exit path for user errors: one line, exit 2
from mmpatch.apis.config import load_config
from mmpatch.sweep import report
from mmpatch.sweep.cells import PER_IMAGE_METRIC, make_cells, run_cells
from mmpatch.sweep.describe import describe_model, task_of
from mmpatch.utils.errors import UserError

TOY_DEFAULT = dict(config_dir='configs/toy', backbones=['vit_t'], patch_sizes=[8, 4, 2],
                   heads=['linear', 'upernet'], work_dir='work_dirs/sweep_toy', jobs=2)
DEFAULT_SEEDS = [0, 1, 2]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='sweep.py', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('configs', nargs='*', help='explicit cell configs (instead of a grid)')
    ap.add_argument('--config-dir', help='grid: folder of {backbone}_p{p}_{head}.py configs')
    ap.add_argument('--backbones', nargs='+', help='grid: e.g. vit_t adventurer_s')
    ap.add_argument('--patch-sizes', nargs='+', type=int, help='grid: e.g. 16 8 4 2 1')
    ap.add_argument('--heads', '--necks', dest='heads', nargs='+',
                    help="grid: the config names' last part, e.g. linear upernet (segmentation "
                         'heads) or simple multidepth (detection necks). The role compared is '
                         "read from each config (decode head; neck in_channels), not the name")
    ap.add_argument('--seeds', nargs='+', type=int, default=DEFAULT_SEEDS,
                    help='one cell per config and seed; the seed sets initialisation and data '
                         'order (randomness.seed). Default: 0 1 2')
    ap.add_argument('--iters-scale', type=float,
                    help="multiply every cell's schedule (iterations, scheduler ends, validation "
                         'and checkpoint intervals) by this factor; the default work dir gets '
                         'the suffix _x<factor>')
    ap.add_argument('--work-dir', help='sweep folder, one sub-folder per cell')
    ap.add_argument('--jobs', type=int,
                    help='cells at a time, each in a worker process with cpu_count/jobs threads '
                         '(default: 2 for the toy default, else 1: in this process)')
    ap.add_argument('--gpus', type=int, default=1, help='GPUs per cell (>1 uses torchrun)')
    ap.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                    help='launcher for single-process cells (e.g. slurm inside srun)')
    ap.add_argument('--collect-only', action='store_true', help='only aggregate finished cells')
    ap.add_argument('--no-baseline', action='store_true', help='skip the majority-class mIoU sanity line')
    ap.add_argument('--no-train-val', action='store_true',
                    help="skip the configs' validation during training: faster, but no "
                         'convergence curve (each cell is tested by tools/test.py either way)')
    ap.add_argument('--cfg-options', nargs='+', default=[], help='passed to every train/test call')
    ap.add_argument('--isolate', action='store_true',
                    help='run each cell in a fresh worker process (by default one device runs '
                         'the cells in this process: one import, compiled kernels reused)')
    return ap.parse_args(argv)


def resolve_grid(args):
    """(config paths, work dir, toy default?) from explicit configs, a grid, or the toy default."""
    grid_given = any([args.config_dir, args.backbones, args.patch_sizes, args.heads])
    if args.configs and grid_given:
        fail('sweep.py', 'give either config files or a grid (--config-dir ...), not both', 2)
    suffix = f'_x{args.iters_scale:g}' if args.iters_scale not in (None, 1) else ''
    if args.configs:
        return args.configs, args.work_dir or f'work_dirs/sweep{suffix}', False
    g = dict(TOY_DEFAULT)
    if grid_given:
        missing = [k for k in ('config_dir', 'backbones', 'patch_sizes', 'heads') if not getattr(args, k)]
        if missing:
            fail('sweep.py', f'a grid needs --{" --".join(m.replace("_", "-") for m in missing)}', 2)
        g.update(config_dir=args.config_dir, backbones=args.backbones, patch_sizes=args.patch_sizes,
                 heads=args.heads, work_dir=f'work_dirs/sweep_{osp.basename(osp.normpath(args.config_dir))}')
    configs = [osp.join(g['config_dir'], f'{b}_p{p}_{h}.py')
               for b in g['backbones'] for p in g['patch_sizes'] for h in g['heads']]
    return configs, args.work_dir or g['work_dir'] + suffix, not grid_given


def keeps_per_image(cfg):
    """Whether the config's test evaluator can keep per-image statistics: mmseg's IoUMetric
    (the sweep tests it as PerImageIoUMetric, the same metrics plus each image's class areas)
    or PerImageIoUMetric itself. Detection (mmdet's CocoMetric) keeps none."""
    evaluator = cfg.get('test_evaluator', {})
    return (task_of(cfg) == 'seg' and isinstance(evaluator, dict)
            and evaluator.get('type') in ('IoUMetric', PER_IMAGE_METRIC))


def read_configs(configs, cfg_options):
    """config -> (task, whether its test keeps per-image statistics), each config read and
    described (backbone, p, decoder role) before any cell runs: a config whose task or role
    cannot be told raises ``UserError`` here."""
    plan = {}
    for config in configs:
        cfg = load_config(config, cfg_options)
        describe_model(cfg)
        plan[config] = task_of(cfg), keeps_per_image(cfg)
    return plan


def main(argv=None):
    args = parse_args(argv)
    configs, work_dir, toy_default = resolve_grid(args)
    try:
        cells = make_cells(configs, args.seeds, work_dir)
    except (FileNotFoundError, ValueError) as e:
        fail('sweep.py', str(e).removeprefix('sweep: '), 2)
    jobs = args.jobs or (TOY_DEFAULT['jobs'] if toy_default else 1)
    if jobs < 1 or (jobs > 1 and (args.gpus > 1 or args.launcher != 'none')):
        fail('sweep.py', '--jobs takes a number >= 1, and cells under torchrun or a launcher run '
              'one at a time (--jobs 1)', 2)
    os.makedirs(work_dir, exist_ok=True)
    if toy_default:
        from mmpatch.datasets.toy_scenes import ensure_toy_seg
        ensure_toy_seg()

    try:  # a config or an option that is wrong: before any cell runs
        plan = read_configs(configs, args.cfg_options)
        write = report.ReportWriter(cells, work_dir, args.gpus, args.cfg_options,
                                    baseline=not args.no_baseline,
                                    task_of_config={c: task for c, (task, _) in plan.items()})
    except UserError as e:
        fail('sweep.py', str(e), 2)
    if not args.collect_only:
        todo = [c for c in cells if not c.is_done()]
        per_image = {c: keeps for c, (_, keeps) in plan.items()}
        print(f'sweep: {len(cells)} cells ({len(configs)} configs x {len(args.seeds)} seeds), '
              f'{len(cells) - len(todo)} already done, {jobs} at a time, work dir {work_dir}',
              flush=True)
        t0 = time.time()
        runs = run_cells(todo, jobs=jobs, isolate=args.isolate, gpus=args.gpus,
                         launcher=args.launcher, cfg_options=args.cfg_options,
                         iters_scale=args.iters_scale, train_val=not args.no_train_val,
                         per_image_of=per_image)
        for i, (cell, error) in enumerate(runs, 1):
            if error is not None:
                runs.close()  # cancels the cells not started
                sys.exit(f'sweep: cell {cell.key} failed: {error}')
            score = report.headline(cell.work_dir, plan[cell.config][0])
            eta = (time.time() - t0) / i * (len(todo) - i)
            print(f'[{i}/{len(todo)}] {cell.key}: {score} after {time.time() - t0:.0f} s '
                  f'(eta {eta:.0f} s)', flush=True)
            if i < len(todo):
                write()  # a sweep cut after this cell still leaves its report

    text = write()
    if text is None:
        sys.exit(f'sweep: no finished cell in {work_dir}')
    print('\n' + text + '\n')
    for what, path in write.files:
        print(f'{what + ":":8s} {path}')
