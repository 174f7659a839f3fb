"""The decoder-dependence sweep: train + test every cell, then the table and the plot.

With no arguments it runs the embedded default: a small ViT on the toy set at
p in {8, 4, 2, 1}, linear head and UperNet, on CPU (~10 min on 2 cores).

    python tools/sweep.py                                   # embedded toy default
    python tools/sweep.py --no-train-val                    # the same, as `make demo` runs it
    python tools/sweep.py --config-dir configs/ade20k --backbones vit_b adventurer_b \
        --patch-sizes 16 8 4 2 --heads linear upernet --gpus 8
    python tools/sweep.py configs/toy/vit_t_p8_linear.py configs/toy/vit_t_p8_upernet.py
    python tools/sweep.py --collect-only --work-dir work_dirs/sweep_toy

Finished cells (``done.json`` in their work dir) are skipped, so a sweep that
was stopped resumes; a half-trained cell resumes from its last checkpoint. The table and
the plot are rewritten after every finished cell, so a sweep cut short leaves the table of
the cells it finished (the rest named under it).
"""
import argparse
import os
import os.path as osp
import sys
import time

from mmpatch.sweep.cells import make_cells, new_mmengine_instances_dropped, run_cell
from mmpatch.sweep import report

TOY_DEFAULT = dict(config_dir='configs/toy', backbones=['vit_t'], patch_sizes=[8, 4, 2, 1],
                   heads=['linear', 'upernet'], work_dir='work_dirs/sweep_toy')


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('configs', nargs='*', help='explicit cell configs (instead of a grid)')
    ap.add_argument('--config-dir', help='grid: folder of {backbone}_p{p}_{head}.py configs')
    ap.add_argument('--backbones', nargs='+', help='grid: e.g. vit_t adventurer_s')
    ap.add_argument('--patch-sizes', nargs='+', type=int, help='grid: e.g. 16 8 4 2 1')
    ap.add_argument('--heads', nargs='+', help='grid: e.g. linear upernet')
    ap.add_argument('--work-dir', help='sweep folder, one sub-folder per cell')
    ap.add_argument('--gpus', type=int, default=1, help='GPUs per cell (>1 uses torchrun)')
    ap.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                    help='launcher for single-process cells (e.g. slurm inside srun)')
    ap.add_argument('--collect-only', action='store_true', help='only aggregate finished cells')
    ap.add_argument('--no-baseline', action='store_true', help='skip the majority-class mIoU sanity line')
    ap.add_argument('--no-train-val', action='store_true',
                    help="skip the configs' validation during training (each cell is tested "
                         'once, by tools/test.py, either way)')
    ap.add_argument('--cfg-options', nargs='+', default=[], help='passed to every train/test call')
    ap.add_argument('--isolate', action='store_true',
                    help="run each cell's training and test as separate processes (always so with "
                         '--gpus > 1 or a launcher); by default one device runs them in this '
                         'process: one import, compiled and autotuned kernels reused')
    return ap.parse_args(argv)


def resolve_grid(args):
    """Config paths and work dir from explicit configs, a grid, or the toy default."""
    grid_given = any([args.config_dir, args.backbones, args.patch_sizes, args.heads])
    if args.configs and grid_given:
        sys.exit('sweep: error: give either config files or a grid (--config-dir ...), not both')
    if args.configs:
        return args.configs, args.work_dir or 'work_dirs/sweep'
    g = dict(TOY_DEFAULT)
    if grid_given:
        missing = [k for k in ('config_dir', 'backbones', 'patch_sizes', 'heads') if not getattr(args, k)]
        if missing:
            sys.exit(f'sweep: error: a grid needs --{" --".join(m.replace("_", "-") for m in missing)}')
        g.update(config_dir=args.config_dir, backbones=args.backbones, patch_sizes=args.patch_sizes,
                 heads=args.heads, work_dir=f'work_dirs/sweep_{osp.basename(osp.normpath(args.config_dir))}')
    configs = [osp.join(g['config_dir'], f'{b}_p{p}_{h}.py')
               for b in g['backbones'] for p in g['patch_sizes'] for h in g['heads']]
    return configs, args.work_dir or g['work_dir']


def main(argv=None):
    args = parse_args(argv)
    configs, work_dir = resolve_grid(args)
    try:
        cells = make_cells(configs, work_dir)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(str(e))
    os.makedirs(work_dir, exist_ok=True)
    if not args.configs and not any([args.config_dir, args.backbones]):
        from mmpatch.datasets.toy_scenes import ensure_toy_seg
        ensure_toy_seg()

    write = ReportWriter(cells, work_dir, args)
    if not args.collect_only:
        todo = [c for c in cells if not c.is_done()]
        print(f'sweep: {len(cells)} cells, {len(cells) - len(todo)} already done, work dir {work_dir}')
        t0 = time.time()
        for i, cell in enumerate(todo, 1):
            print(f'[{i}/{len(todo)}] {cell.name}: training + testing ...', flush=True)
            t = time.time()
            try:
                run_cell(cell, gpus=args.gpus, launcher=args.launcher, cfg_options=args.cfg_options,
                         isolate=args.isolate,
                         train_val=not args.no_train_val)
            except (RuntimeError, FileNotFoundError) as e:
                sys.exit(f'sweep: cell {cell.name} failed: {e}')
            mIoU = report.read_test_metrics(cell.work_dir).get('mIoU')
            eta = (time.time() - t0) / i * (len(todo) - i)
            print(f'[{i}/{len(todo)}] {cell.name}: mIoU {mIoU:.2f} in {time.time() - t:.0f} s '
                  f'(eta {eta:.0f} s)', flush=True)
            if i < len(todo):
                write()  # a sweep cut after this cell still leaves its table

    table = write()
    if table is None:
        sys.exit(f'sweep: no finished cell in {work_dir}')
    print('\n' + table)
    csv_path, md_path, png_path = write.paths
    print(f'\nresults: {csv_path}\ntable:   {md_path}\nplot:    {png_path}')


class ReportWriter:
    """Writes results.{csv,md,png} of the finished cells; the model sizes (FLOPs on 'meta')
    and the majority-class baseline are computed once per sweep, not per call."""

    def __init__(self, cells, work_dir, args):
        self.cells, self.args = cells, args
        self.paths = [osp.join(work_dir, f'results.{ext}') for ext in ('csv', 'md', 'png')]
        self.sizes = {}
        self.baseline = None

    def __call__(self):
        """The Markdown table written, or None when no cell has finished."""
        args = self.args
        with new_mmengine_instances_dropped():  # the scope and logger of building the models
            rows = report.collect(self.cells, gpus=args.gpus, cfg_options=args.cfg_options,
                                  sizes=self.sizes)
            if not rows:
                return None
            if self.baseline is None and not args.no_baseline:
                self.baseline = baseline_from(self.cells[0].config, args.cfg_options)
        csv_path, md_path, png_path = self.paths
        report.write_csv(rows, csv_path)
        unfinished = [c.name for c in self.cells if not c.is_done()]
        table = report.markdown_table(rows, self.baseline, unfinished)
        with open(md_path, 'w') as f:
            f.write(table + '\n')
        report.plot(rows, png_path)
        return table


def baseline_from(config, cfg_options=()):
    """Majority-class mIoU on the config's test set (an ImageNet-free sanity floor)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    cfg = report.load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return report.majority_class_miou(dataset, len(dataset.metainfo['classes']))


if __name__ == '__main__':
    main()
