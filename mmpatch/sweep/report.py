"""Aggregate sweep cells into results.csv, a Markdown report with verdicts, and a plot.

Every number is read from what mmengine wrote (``vis_data/scalars.json`` of training with its
validation curve, the ``<timestamp>.json`` and ``per_image.npz`` of the test) or measured from
the config's model (parameters, FLOPs); none is typed in. The training cost of each cell's
full-size counterpart (``configs/ade20k``) is read from a committed cost table
(``benchmark.py cost``, results/cost/). The statistics (CIs over seeds, the
paired gap, the bootstrap over images, the verdicts, convergence) are in ``stats.py``.
"""
import csv
import glob
import json
import os.path as osp
import re
import statistics

import numpy as np
import torch

from mmpatch.apis.config import load_config
from mmpatch.apis.runner import quiet_warnings
from mmpatch.sweep import stats
from mmpatch.sweep.cells import per_image_file

HEAD_NAMES = {'LinearHead': 'linear', 'UPerHead': 'upernet'}
CSV_FIELDS = ('config', 'seed', 'backbone', 'patch_size', 'head', 'mIoU', 'boot_lo', 'boot_hi',
              'aAcc', 'last_quarter_gain', 'converged', 'curve', 'params_M', 'gflops',
              'train_img_s', 'peak_mem_MB', 'train_s', 'full_gpu_h')
#: Committed cost tables (``benchmark.py cost``): ``results/cost/<device>_<date>_<commit>/``.
COST_TABLES = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'results',
                       'cost', '*', 'cost.csv')


def _newest(pattern):
    paths = sorted(glob.glob(pattern))
    return paths[-1] if paths else None


def read_test_metrics(cell_dir):
    """Metrics dict written by tools/test.py into ``<cell>/test/<stamp>/<stamp>.json``."""
    path = _newest(osp.join(cell_dir, 'test', '*', '*.json'))
    if path is None:
        raise FileNotFoundError(f'no test metrics under {cell_dir}/test: run tools/test.py first')
    with open(path) as f:
        return json.load(f)


def _train_records(cell_dir):
    """Training's scalars.json records of every run in the cell (a resumed cell has several)."""
    for path in sorted(glob.glob(osp.join(cell_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                yield json.loads(line)


def read_train_scalars(cell_dir, skip_first=5):
    """Median seconds/iter and peak memory (MB, CUDA only) from mmengine's scalars.json."""
    times, mems = [], []
    for rec in _train_records(cell_dir):
        if 'time' in rec and 'loss' in rec:
            times.append(rec['time'])
            if 'memory' in rec:
                mems.append(rec['memory'])
    times = times[skip_first:] or times
    return (statistics.median(times) if times else None), (max(mems) if mems else None)


def read_curve(cell_dir, metric='mIoU'):
    """The validations during training as ``[(iteration, value)]``, one per iteration."""
    curve = {rec['step']: rec[metric] for rec in _train_records(cell_dir) if metric in rec}
    return sorted(curve.items())


def describe_model(cfg):
    """(backbone label, patch size, head name) from the config itself."""
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    arch = backbone.get('arch', '')
    if not isinstance(arch, str):  # explicit numbers, e.g. a toy-size model
        arch = f"{arch['embed_dims']}d x {arch['num_layers']} blocks"
    label = f"{backbone['type']} ({arch})"
    return label, int(backbone['patch_size']), HEAD_NAMES.get(head['type'], head['type'])


def full_size_config(backbone, patch_size, head):
    """The name of a cell's full-size ADE20K config (``configs/ade20k/<name>.py``, e.g.
    'vit_t_p8_linear') from ``describe_model``'s (backbone label, patch size, head): same
    backbone family, size, patch size and head. A toy-size backbone given by its numbers
    ('PatchViT (64d x 4 blocks)') counts as the named size nearest its width (T). None for a
    backbone of another family."""
    from mmpatch.models.backbones import patch_mamba, patch_vit
    families = {'PatchViT': ('vit', patch_vit.ARCH_SETTINGS),
                'PatchMamba': ('adventurer', patch_mamba.ARCH_SETTINGS)}
    label = re.fullmatch(r'(\w+) \((.+)\)', backbone)
    if not label or label[1] not in families:
        return None
    prefix, archs = families[label[1]]
    arch = label[2] if label[2] in archs else {a[0]: a for a in archs}.get(label[2])
    width = re.match(r'(\d+)d x ', label[2])
    if arch is None and width:
        arch = min(('tiny', 'small', 'base'),
                   key=lambda a: abs(archs[a]['embed_dims'] - int(width[1])))
    return None if arch is None else f'{prefix}_{arch[0]}_p{patch_size}_{head}'


def read_cost_table(path=None):
    """``{config name: GPU-hours of its full schedule on 8 GPUs}`` from a ``cost.csv`` of
    ``benchmark.py cost`` (default: the newest committed one, by the date in its folder name);
    {} when there is none."""
    if path is None:
        tables = sorted(glob.glob(COST_TABLES), key=lambda p: (
            re.findall(r'_(\d{4}-\d{2}-\d{2})_', p)[-1:], osp.getmtime(p)))
        path = tables[-1] if tables else None
    if path is None or not osp.isfile(path):
        return {}
    with open(path) as f:
        return {r['config']: float(r['gpu_hours']) for r in csv.DictReader(f)
                if r.get('gpu_hours')}


def measure_model(cfg, input_hw):
    """Parameters (M) and forward GFLOPs of the config's segmentor on one input."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    import mmpatch.models  # noqa: F401  (registers the backbones and heads)
    from mmpatch.utils.flops import count_forward_flops
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
        model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    x = torch.zeros(1, 3, *input_hw, device='meta')
    model = model.to('meta')
    gflops = count_forward_flops(model, x, mode='tensor') / 1e9
    return params, gflops


def majority_class_miou(dataset, num_classes, ignore_index=255):
    """mIoU (%) of predicting the most frequent ground-truth class everywhere."""
    hist = np.zeros(num_classes, dtype=np.int64)
    labels = []
    for i in range(len(dataset)):
        seg = dataset[i]['data_samples'].gt_sem_seg.data.numpy().ravel()
        seg = seg[seg != ignore_index]
        hist += np.bincount(seg, minlength=num_classes)[:num_classes]
        labels.append(seg)
    majority = int(hist.argmax())
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for seg in labels:
        inter[majority] += (seg == majority).sum()
        union += np.bincount(seg, minlength=num_classes)[:num_classes]
        union[majority] += (seg != majority).sum()
    present = union > 0
    return float(100 * np.mean(inter[present] / union[present]))


def collect(cells, gpus=1, cfg_options=(), sizes=None, threshold=stats.CONVERGENCE_THRESHOLD,
            cost=None):
    """One dict per finished cell (``CSV_FIELDS``). ``sizes``: a dict caching each config's
    (backbone, p, head, crop, batch, params M, GFLOPs) between calls; ``cost``: a
    ``read_cost_table`` (the full-size counterpart's GPU-hours, ``full_gpu_h``)."""
    sizes = {} if sizes is None else sizes
    rows = []
    for cell in cells:
        if not cell.is_done():
            continue
        if cell.config not in sizes:
            cfg = load_config(cell.config, cfg_options)
            crop = tuple(cfg.get('crop_size', (512, 512)))
            sizes[cell.config] = (*describe_model(cfg), cfg.train_dataloader.batch_size,
                                  *measure_model(cfg, crop))
        backbone, p, head, batch, params, gflops = sizes[cell.config]
        metrics = read_test_metrics(cell.work_dir)
        sec_per_iter, peak_mb = read_train_scalars(cell.work_dir)
        curve = read_curve(cell.work_dir)
        gain, conv = stats.converged(curve, threshold)
        boot_lo = boot_hi = None
        if osp.isfile(per_image_file(cell)):
            _, boot_lo, boot_hi = stats.bootstrap_miou_ci(per_image_file(cell))
        with open(cell.done_file) as f:
            done = json.load(f)
        rows.append(dict(
            config=cell.name, seed=cell.seed, backbone=backbone, patch_size=p, head=head,
            mIoU=metrics.get('mIoU'), boot_lo=_round(boot_lo), boot_hi=_round(boot_hi),
            aAcc=metrics.get('aAcc'), last_quarter_gain=_round(gain), converged=conv,
            curve=' '.join(f'{it}:{v:.2f}' for it, v in curve),
            params_M=round(params, 3), gflops=round(gflops, 3),
            train_img_s=round(batch * gpus / sec_per_iter, 2) if sec_per_iter else None,
            peak_mem_MB=peak_mb, train_s=round(done.get('train_seconds', 0), 1),
            full_gpu_h=(cost or {}).get(full_size_config(backbone, p, head))))
    return rows


def _round(v, nd=2):
    return None if v is None else round(float(v), nd)


def write_csv(rows, path):
    if not rows:
        raise ValueError('no finished cells to report')
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v, nd=1):
    return '-' if v is None else (f'{v:.{nd}f}' if isinstance(v, float) else str(v))


def _mean_ci(rec):
    """'mean ± half-width (n)' of a summary record; one seed has no interval."""
    if rec is None:
        return '-'
    if np.isnan(rec['half']):
        return f"{rec['mean']:.2f} (n=1)"
    return f"{rec['mean']:.2f} ± {rec['half']:.2f}"


#: A cell within this many mIoU points of the majority-class baseline learned (almost) nothing
#: but the most frequent class: its verdicts compare floors, not decoders.
FLOOR_MARGIN = 1.0


def at_floor(row, baseline_miou):
    return baseline_miou is not None and row['mIoU'] < baseline_miou + FLOOR_MARGIN


def verdict_lines(rows, level=0.95, baseline_miou=None):
    """The two claims per backbone as lines (stats.format_verdict), then how many of its cells
    did not converge and how many stayed at the majority-class floor."""
    lines = []
    for backbone, claims in stats.verdicts(rows, level).items():
        sub = [r for r in rows if r['backbone'] == backbone]
        for claim in claims.values():
            lines.append(stats.format_verdict(backbone, claim))
        n_not = sum(r['converged'] is False for r in sub)
        line = (f'{backbone}: {n_not} of {len(sub)} cells not converged '
                f'(last-quarter gain > {stats.CONVERGENCE_THRESHOLD:g} mIoU)')
        if baseline_miou is not None:
            n_floor = sum(at_floor(r, baseline_miou) for r in sub)
            line += (f'; {n_floor} of {len(sub)} at the majority-class floor (mIoU < '
                     f'{baseline_miou:.2f} + {FLOOR_MARGIN:g})')
        lines.append(line)
    return lines


def markdown_report(rows, baseline_miou=None, unfinished=(), level=0.95):
    """The verdicts, then per backbone a table over patch sizes: mean ± 95% CI over seeds per
    head, the paired gap, the mean per-run bootstrap half-width, and the costs; then the
    cells that did not converge and those without a result."""
    out = ['## Verdicts', '', *[f'- {line}' for line in verdict_lines(rows, level, baseline_miou)],
           '']
    summary = stats.summarise(rows, level)
    cells = {(c['backbone'], c['patch_size'], c['head']): c for c in summary['cells']}
    gaps = {(g['backbone'], g['patch_size']): g for g in summary['gaps']}
    pct = f'{100 * level:g}%'
    for backbone in sorted({r['backbone'] for r in rows}):
        sub = [r for r in rows if r['backbone'] == backbone]
        out += [f'### {backbone}', '',
                f'mIoU as mean ± half-width of the {pct} CI over seeds (Student t); gap = UperNet '
                '- linear, paired by seed; image CI = mean half-width of the per-run bootstrap '
                'over validation images.', '',
                '| patch | seeds | linear mIoU | UperNet mIoU | gap (UperNet - linear) '
                '| image CI ± (lin / Uper) | not converged (lin / Uper) | params M (lin / Uper) '
                '| GFLOPs (lin / Uper) | train img/s (lin / Uper) | peak mem MB (lin / Uper) '
                '| full-size config, GPU-h on 8 GPUs (lin / Uper) |',
                '|---|---|---|---|---|---|---|---|---|---|---|---|']
        for p in sorted({r['patch_size'] for r in sub}, reverse=True):
            by_head = {h: [r for r in sub if r['patch_size'] == p and r['head'] == h]
                       for h in ('linear', 'upernet')}

            def pair(fn, by_head=by_head):
                return ' / '.join(fn(by_head[h]) for h in ('linear', 'upernet'))

            def first(key, nd=1):
                return lambda rs: _fmt(rs[0][key], nd) if rs else '-'

            def mean_of(key, nd=1):
                return lambda rs: _fmt(float(np.mean([r[key] for r in rs])), nd) \
                    if rs and all(r[key] is not None for r in rs) else '-'

            def boot_half(rs):
                halves = [(r['boot_hi'] - r['boot_lo']) / 2 for r in rs if r['boot_lo'] is not None]
                return f'{np.mean(halves):.2f}' if halves else '-'

            def not_conv(rs):
                return f"{sum(r['converged'] is False for r in rs)}/{len(rs)}" if rs else '-'

            n_seeds = max(len(v) for v in by_head.values())
            out.append(f"| {p} | {n_seeds} | {_mean_ci(cells.get((backbone, p, 'linear')))} "
                       f"| {_mean_ci(cells.get((backbone, p, 'upernet')))} "
                       f'| {_mean_ci(gaps.get((backbone, p)))} | {pair(boot_half)} '
                       f"| {pair(not_conv)} | {pair(first('params_M', 2))} "
                       f"| {pair(first('gflops', 2))} | {pair(mean_of('train_img_s'))} "
                       f"| {pair(mean_of('peak_mem_MB', 0))} "
                       f"| {pair(lambda rs: _fmt(rs[0].get('full_gpu_h'), 0) if rs else '-')} |")
        out.append('')
    not_converged = [f"{r['config']}/seed{r['seed']} (+{r['last_quarter_gain']:.1f})"
                     for r in rows if r['converged'] is False]
    if not_converged:
        out += [f'Not converged (mIoU gained over the last quarter of training): '
                f'{", ".join(not_converged)}.', '']
    floor = [f"{r['config']}/seed{r['seed']}" for r in rows if at_floor(r, baseline_miou)]
    if floor:
        out += [f'At the majority-class floor (learned little beyond the most frequent class): '
                f'{", ".join(floor)}.', '']
    if unfinished:
        out += [f'No result yet, not in the table: {", ".join(unfinished)}.', '']
    if baseline_miou is not None:
        out.append(f'Sanity: predicting the majority class everywhere gives mIoU {baseline_miou:.2f}.')
    return '\n'.join(out)


def plot(rows, path, level=0.95):
    """Per backbone: mean mIoU against patch size (log2 axis, large p left) with CI error bars,
    a line per head; the paired gap with its CI on a second axis."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    summary = stats.summarise(rows, level)
    backbones = sorted({r['backbone'] for r in rows})
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        ps = sorted({r['patch_size'] for r in rows if r['backbone'] == backbone}, reverse=True)
        x = {p: -np.log2(p) for p in ps}
        for head, style in (('linear', 'o-'), ('upernet', 's--')):
            pts = [c for c in summary['cells'] if c['backbone'] == backbone and c['head'] == head]
            if pts:
                pts.sort(key=lambda c: x[c['patch_size']])
                ax.errorbar([x[c['patch_size']] for c in pts], [c['mean'] for c in pts],
                            yerr=[np.nan_to_num(c['half']) for c in pts], fmt=style, capsize=3,
                            label=f'{head} head (n={max(c["n"] for c in pts)})')
        gaps = [g for g in summary['gaps'] if g['backbone'] == backbone]
        if gaps:
            ax2 = ax.twinx()
            ax2.bar([x[g['patch_size']] for g in gaps], [g['mean'] for g in gaps], width=0.3,
                    yerr=[np.nan_to_num(g['half']) for g in gaps], alpha=0.3, color='gray',
                    capsize=3, label='gap (UperNet - linear)')
            ax2.set_ylabel('gap (mIoU points)')
            ax2.axhline(0, color='gray', lw=0.5)
            ax2.legend(loc='lower right')
        ax.set_xticks(list(x.values()), [f'p{p}' for p in ps])
        ax.set_xlabel('patch size (log2 scale)')
        ax.set_ylabel(f'mIoU (%), mean ± {100 * level:g}% CI over seeds')
        ax.set_title(backbone)
        ax.legend(loc='upper left')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def baseline_from(config, cfg_options=()):
    """Majority-class mIoU on the config's test set (an ImageNet-free sanity floor)."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    cfg = load_config(config, cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return majority_class_miou(dataset, len(dataset.metainfo['classes']))


class ReportWriter:
    """Writes results.{csv,md,png} of the finished cells; the model sizes (FLOPs on 'meta')
    and the majority-class baseline are computed once per sweep, not per call."""

    def __init__(self, cells, work_dir, gpus=1, cfg_options=(), baseline=True, cost_csv=None):
        self.cells, self.gpus, self.cfg_options = cells, gpus, list(cfg_options)
        self.cost = read_cost_table(cost_csv)  # the full-size configs' GPU-hours
        self.paths = [osp.join(work_dir, f'results.{ext}') for ext in ('csv', 'md', 'png')]
        self.sizes = {}
        self.want_baseline, self.baseline = baseline, None

    def __call__(self):
        """The Markdown report written, or None when no cell has finished."""
        with quiet_warnings(verbose=False):  # mmseg's noise when the models are built for FLOPs
            rows = collect(self.cells, self.gpus, self.cfg_options, self.sizes, cost=self.cost)
            if not rows:
                return None
            if self.baseline is None and self.want_baseline:
                self.baseline = baseline_from(self.cells[0].config, self.cfg_options)
        csv_path, md_path, png_path = self.paths
        write_csv(rows, csv_path)
        unfinished = [c.key for c in self.cells if not c.is_done()]
        text = markdown_report(rows, self.baseline, unfinished)
        with open(md_path, 'w') as f:
            f.write(text + '\n')
        plot(rows, png_path)
        return text
