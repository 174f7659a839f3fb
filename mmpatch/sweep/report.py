"""Aggregate sweep cells into results.csv, a Markdown report with verdicts, and a plot.

Every number is read from what mmengine wrote (``vis_data/scalars.json`` of training with its
validation curve, the ``<timestamp>.json`` and, for segmentation, ``per_image.npz`` of the test)
or measured from the config's model (parameters, FLOPs: ``describe.py``); none is typed in. The
training cost of each cell's full-size counterpart (``configs/ade20k``, ``configs/coco``) is read
from a committed cost table (``benchmark.py cost``, results/cost/). The
statistics (CIs over seeds, the paired gap, the bootstrap over images, the verdicts,
convergence) are in ``stats.py``.

A sweep may hold segmentation and detection cells (the task is each config's default_scope):
the report has one part per task (verdicts and one table per backbone), each task its own CSV
and plot (``results.csv`` / ``results.png`` when the sweep has one task, ``results_seg.*`` and
``results_det.*`` when it has both). Detection scores are mmdet's COCO AP times 100 (points).
"""
import csv
import glob
import json
import os.path as osp
import re
import statistics

import numpy as np

from mmpatch.apis.config import load_config
from mmpatch.apis.runner import quiet_warnings
from mmpatch.sweep import stats
from mmpatch.sweep.cells import per_image_file
from mmpatch.sweep.describe import (HEAD_NAMES, describe_model, flops_input_size,  # noqa: F401
                                    measure_model, task_of)

#: CSV columns of a segmentation cell (rows may carry more keys: they follow these).
CSV_FIELDS = ('config', 'seed', 'backbone', 'patch_size', 'head', 'mIoU', 'boot_lo', 'boot_hi',
              'aAcc', 'last_quarter_gain', 'converged', 'curve', 'params_M', 'gflops',
              'train_img_s', 'peak_mem_MB', 'train_s', 'full_gpu_h')
#: CSV columns of a detection cell: COCO AP in points; gflops: backbone + neck on one
#: flops_input (HxW) image.
DET_CSV_FIELDS = ('config', 'seed', 'backbone', 'patch_size', 'neck', 'bbox_AP', 'segm_AP',
                  'AP_small', 'bbox_AP50', 'last_quarter_gain', 'converged', 'curve', 'params_M',
                  'gflops', 'flops_input', 'train_img_s', 'peak_mem_MB', 'train_s', 'full_gpu_h')
FIELDS = {'seg': CSV_FIELDS, 'det': DET_CSV_FIELDS}
TASK_TITLES = {'seg': 'Segmentation', 'det': 'Detection'}
#: A detection cell's scores: row key -> mmdet CocoMetric key (after its prefix, e.g. 'coco/').
COCO_SCORES = {'bbox_AP': 'bbox_mAP', 'segm_AP': 'segm_mAP', 'AP_small': 'bbox_mAP_s',
               'bbox_AP50': 'bbox_mAP_50'}
#: Committed cost tables (``benchmark.py cost``): ``results/cost/<device>_<date>_<commit>/``.
COST_TABLES = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'results',
                       'cost', '*', 'cost.csv')
#: The full-size config a cell's decoder role stands for: segmentation's heads are the ADE20K
#: configs' own; a detection cell with the simple pyramid stands for the COCO Cascade Mask R-CNN
#: config (the same neck), the multi-depth neck has no full-size config.
FULL_SIZE_ROLE = {'linear': 'linear', 'upernet': 'upernet', 'simple': 'cascade_mask_rcnn'}


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


def _metric_key(metrics, name):
    """The key of ``name`` in ``metrics``: ``name`` itself or ``<prefix>/name`` (mmdet's
    CocoMetric writes 'coco/bbox_mAP'); None when absent."""
    if name in metrics:
        return name
    return next((k for k in metrics if k.endswith('/' + name)), None)


def read_curve(cell_dir, metric='mIoU', scale=1.0):
    """The validations during training as ``[(iteration, value * scale)]``, one per iteration;
    ``metric`` is matched as :func:`_metric_key` does."""
    curve = {}
    for rec in _train_records(cell_dir):
        key = _metric_key(rec, metric)
        if key is not None and rec[key] is not None:
            curve[rec['step']] = rec[key] * scale
    return sorted(curve.items())


def coco_score(metrics, name):
    """mmdet CocoMetric's ``name`` (e.g. 'bbox_mAP', under any prefix) in points (x 100); None
    when absent or negative (COCO's -1: no object of that kind, e.g. no small objects)."""
    key = _metric_key(metrics, name)
    value = None if key is None else metrics[key]
    return None if value is None or value < 0 else round(100.0 * value, 2)


def full_size_config(backbone, patch_size, head):
    """The name of a cell's full-size config (``configs/ade20k/<name>.py``, e.g.
    'vit_t_p8_linear', or ``configs/coco/<name>.py``, e.g. 'vit_t_p8_cascade_mask_rcnn') from
    ``describe_model``'s (backbone label, patch size, decoder role): same backbone family, size
    and patch size, the role's full-size decoder (``FULL_SIZE_ROLE``; None for a role without
    one). A toy-size backbone given by its numbers ('PatchViT (64d x 4 blocks)') counts as the
    named size nearest its width (T). None for a backbone of another family."""
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
    full = FULL_SIZE_ROLE.get(head)
    return None if arch is None or full is None else f'{prefix}_{arch[0]}_p{patch_size}_{full}'


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


def read_scores(task, cell, metrics):
    """A finished cell's scores from its test ``metrics``: segmentation mIoU, aAcc and the
    per-image bootstrap interval; detection COCO AP in points (``COCO_SCORES``)."""
    if task == 'det':
        return {row_key: coco_score(metrics, name) for row_key, name in COCO_SCORES.items()}
    boot_lo = boot_hi = None
    if osp.isfile(per_image_file(cell)):
        _, boot_lo, boot_hi = stats.bootstrap_miou_ci(per_image_file(cell))
    return dict(mIoU=metrics.get('mIoU'), boot_lo=_round(boot_lo), boot_hi=_round(boot_hi),
                aAcc=metrics.get('aAcc'))


def read_task_curve(task, cell_dir):
    """The validation curve of the score the task's verdicts use: mIoU, or bbox AP in points."""
    return read_curve(cell_dir, 'bbox_mAP', 100.0) if task == 'det' else read_curve(cell_dir)


def headline(cell_dir, task):
    """The cell's verdict score as text, e.g. 'mIoU 42.25' or 'bbox AP 3.30'."""
    metrics = read_test_metrics(cell_dir)
    value = coco_score(metrics, 'bbox_mAP') if task == 'det' else metrics.get('mIoU')
    return f"{stats.TASKS[task].metric_label} {'?' if value is None else f'{value:.2f}'}"


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


def describe_config(config, cfg_options=()):
    """What the report needs of one config, measured once per sweep: task, backbone, patch size,
    decoder role, batch size, params (M), GFLOPs and the FLOPs input (h, w)."""
    cfg = load_config(config, cfg_options)
    backbone, p, role = describe_model(cfg)
    input_hw = flops_input_size(cfg)
    params, gflops = measure_model(cfg, input_hw)
    return dict(task=task_of(cfg), backbone=backbone, patch_size=p, role=role,
                batch=cfg.train_dataloader.batch_size, params_M=params, gflops=gflops,
                input_hw=tuple(input_hw))


def collect(cells, gpus=1, cfg_options=(), sizes=None, threshold=stats.CONVERGENCE_THRESHOLD,
            cost=None):
    """One dict per finished cell: its task's CSV fields (``FIELDS``) and ``task``. ``sizes``: a
    dict caching each config's :func:`describe_config` between calls. A row is a plain dict:
    a further column is one more key (``write_csv`` writes keys beyond the task's fields after
    them). ``cost``: a ``read_cost_table`` (the full-size counterpart's GPU-hours, ``full_gpu_h``)."""
    sizes = {} if sizes is None else sizes
    rows = []
    for cell in cells:
        if not cell.is_done():
            continue
        if cell.config not in sizes:
            sizes[cell.config] = describe_config(cell.config, cfg_options)
        size = sizes[cell.config]
        task = size['task']
        metrics = read_test_metrics(cell.work_dir)
        sec_per_iter, peak_mb = read_train_scalars(cell.work_dir)
        curve = read_task_curve(task, cell.work_dir)
        gain, conv = stats.converged(curve, threshold)
        with open(cell.done_file) as f:
            done = json.load(f)
        model = dict(params_M=round(size['params_M'], 3), gflops=round(size['gflops'], 3))
        if task == 'det':
            model['flops_input'] = 'x'.join(map(str, size['input_hw']))
        rows.append(dict(
            config=cell.name, seed=cell.seed, task=task, backbone=size['backbone'],
            patch_size=size['patch_size'], **{stats.TASKS[task].axis: size['role']},
            **read_scores(task, cell, metrics), last_quarter_gain=_round(gain), converged=conv,
            curve=' '.join(f'{it}:{v:.2f}' for it, v in curve), **model,
            train_img_s=round(size['batch'] * gpus / sec_per_iter, 2) if sec_per_iter else None,
            peak_mem_MB=peak_mb, train_s=round(done.get('train_seconds', 0), 1),
            full_gpu_h=(cost or {}).get(full_size_config(size['backbone'], size['patch_size'],
                                                         size['role']))))
    return rows


def _round(v, nd=2):
    return None if v is None else round(float(v), nd)


def task_of_row(row):
    """A row's task; rows without one are segmentation rows (the sweep's first task)."""
    return row.get('task', 'seg')


def tasks_in(rows):
    """The tasks of ``rows``, in ``stats.TASKS`` order."""
    present = {task_of_row(r) for r in rows}
    return [t for t in stats.TASKS if t in present]


def write_csv(rows, path):
    """The rows of one task: its ``FIELDS``, then any other key the rows carry (but ``task``)."""
    if not rows:
        raise ValueError('no finished cells to report')
    tasks = tasks_in(rows)
    if len(tasks) > 1:
        raise ValueError(f'write_csv: rows of {tasks} in one file; write one CSV per task')
    fields = list(FIELDS[tasks[0]])
    for row in rows:
        fields += [k for k in row if k not in fields and k != 'task']
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
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


def verdict_lines(rows, level=0.95, baseline_miou=None, task=stats.SEG):
    """The two claims per backbone as lines (stats.format_verdict), then how many of its cells
    did not converge (and for how many that is unknown) and (segmentation, with a baseline) how
    many stayed at the majority-class floor. ``rows``: one task's."""
    lines = []
    for backbone, claims in stats.verdicts(rows, level, task).items():
        sub = [r for r in rows if r['backbone'] == backbone]
        for claim in claims.values():
            lines.append(stats.format_verdict(backbone, claim))
        n_not = sum(r['converged'] is False for r in sub)
        n_unknown = sum(r['converged'] is None for r in sub)
        line = (f'{backbone}: {n_not} of {len(sub)} cells not converged '
                f'(last-quarter gain > {stats.CONVERGENCE_THRESHOLD:g} {task.metric_label})')
        if n_unknown:
            line += (f'; convergence unknown for {n_unknown} (no validation during training '
                     'before its last quarter)')
        if baseline_miou is not None:
            n_floor = sum(at_floor(r, baseline_miou) for r in sub)
            line += (f'; {n_floor} of {len(sub)} at the majority-class floor (mIoU < '
                     f'{baseline_miou:.2f} + {FLOOR_MARGIN:g})')
        lines.append(line)
    return lines


#: The roles' short names in the tables' paired columns.
SHORT_ROLES = {'seg': ('lin', 'Uper'), 'det': ('simple', 'multi')}


def _ci_text(values, level):
    """'mean ± half-width' over seeds (Student t) of the values that exist; '-' when none."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    ci = stats.mean_ci(values, level)
    return _mean_ci(ci._asdict())


def _table_columns(task, level):
    """The table's columns after the two scores and the gap: (header, fn(rows of one cell
    group) -> text), each shown for both roles as 'plain / decoder'. One entry per column: a
    further column (e.g. a cost) is one more entry here."""
    def first(key, nd=1):
        return lambda rs: _fmt(rs[0].get(key), nd) if rs else '-'

    def mean_of(key, nd=1):
        return lambda rs: _fmt(float(np.mean([r[key] for r in rs])), nd) \
            if rs and all(r.get(key) is not None for r in rs) else '-'

    def ci_of(key):
        return lambda rs: _ci_text([r.get(key) for r in rs], level) if rs else '-'

    def boot_half(rs):
        halves = [(r['boot_hi'] - r['boot_lo']) / 2 for r in rs if r['boot_lo'] is not None]
        return f'{np.mean(halves):.2f}' if halves else '-'

    def not_conv(rs):
        return f"{sum(r['converged'] is False for r in rs)}/{len(rs)}" if rs else '-'

    own = ([('image CI ±', boot_half)] if task.name == 'seg' else
           [('segm AP', ci_of('segm_AP')), ('AP_small', ci_of('AP_small'))])
    return own + [('not converged', not_conv), ('params M', first('params_M', 2)),
                  ('GFLOPs', first('gflops', 2)), ('train img/s', mean_of('train_img_s')),
                  ('peak mem MB', mean_of('peak_mem_MB', 0)),
                  ('full-size config, GPU-h on 8 GPUs', first('full_gpu_h', 0))]


def _caption(task, rows, pct):
    if task.name == 'seg':
        return (f'mIoU as mean ± half-width of the {pct} CI over seeds (Student t); gap = UperNet '
                '- linear, paired by seed; image CI = mean half-width of the per-run bootstrap '
                'over validation images.')
    inputs = ', '.join(sorted({r['flops_input'] for r in rows if r.get('flops_input')})) or '?'
    return (f'bbox AP, segm AP and AP_small (bbox AP of small objects) in COCO points (0-100), '
            f'as mean ± half-width of the {pct} CI over seeds (Student t); gap = multidepth - '
            'simple in bbox AP, paired by seed. params: the whole detector; GFLOPs: backbone + '
            f'neck forward on one {inputs} input (the test Resize scale, padded as the data '
            'preprocessor pads; the RPN and RoI heads are not counted).')


def _task_report(rows, task, level, baseline_miou=None):
    """One task's part of the report: verdicts, one table per backbone over patch sizes, the
    cells that did not converge and (segmentation) those at the majority-class floor."""
    out = ['## Verdicts', '',
           *[f'- {line}' for line in verdict_lines(rows, level, baseline_miou, task)], '']
    summary = stats.summarise(rows, level, task)
    cells = {(c['backbone'], c['patch_size'], c[task.axis]): c for c in summary['cells']}
    gaps = {(g['backbone'], g['patch_size']): g for g in summary['gaps']}
    pct = f'{100 * level:g}%'
    roles = (task.plain, task.decoder)
    short = ' / '.join(SHORT_ROLES[task.name])
    columns = _table_columns(task, level)
    metric = task.metric_label
    headers = [f'{task.plain_label} {metric}', f'{task.decoder_label} {metric}',
               f'gap ({task.decoder_label} - {task.plain_label})',
               *[f'{name} ({short})' for name, _ in columns]]
    for backbone in sorted({r['backbone'] for r in rows}):
        sub = [r for r in rows if r['backbone'] == backbone]
        out += [f'### {backbone}', '', _caption(task, sub, pct), '',
                '| patch | seeds | ' + ' | '.join(headers) + ' |',
                '|' + '---|' * (len(headers) + 2)]
        for p in sorted({r['patch_size'] for r in sub}, reverse=True):
            by_role = {h: [r for r in sub if r['patch_size'] == p and r[task.axis] == h]
                       for h in roles}
            n_seeds = max(len(v) for v in by_role.values())
            values = [_mean_ci(cells.get((backbone, p, h))) for h in roles]
            values.append(_mean_ci(gaps.get((backbone, p))))
            values += [' / '.join(fn(by_role[h]) for h in roles) for _, fn in columns]
            out.append(f'| {p} | {n_seeds} | ' + ' | '.join(values) + ' |')
        out.append('')
    not_converged = [f"{r['config']}/seed{r['seed']} (+{r['last_quarter_gain']:.1f})"
                     for r in rows if r['converged'] is False]
    if not_converged:
        out += [f'Not converged ({metric} gained over the last quarter of training): '
                f'{", ".join(not_converged)}.', '']
    floor = [f"{r['config']}/seed{r['seed']}" for r in rows if at_floor(r, baseline_miou)]
    if floor:
        out += [f'At the majority-class floor (learned little beyond the most frequent class): '
                f'{", ".join(floor)}.', '']
    return out


def markdown_report(rows, baseline_miou=None, unfinished=(), level=0.95):
    """Per task (one part each, titled when the sweep has several): the verdicts, then per
    backbone a table over patch sizes: mean ± 95% CI over seeds per decoder role, the paired
    gap, the task's own columns (segmentation: the per-run bootstrap half-width; detection:
    segm AP and AP_small) and the costs; then the cells that did not converge and those
    without a result. ``baseline_miou``: the segmentation cells' majority-class mIoU."""
    tasks = tasks_in(rows)
    out = []
    for name in tasks:
        if len(tasks) > 1:
            out += [f'# {TASK_TITLES[name]}', '']
        out += _task_report([r for r in rows if task_of_row(r) == name], stats.TASKS[name], level,
                            baseline_miou if name == 'seg' else None)
    if unfinished:
        out += [f'No result yet, not in the table: {", ".join(unfinished)}.', '']
    if baseline_miou is not None and 'seg' in tasks:
        out.append(f'Sanity: predicting the majority class everywhere gives mIoU {baseline_miou:.2f}.')
    return '\n'.join(out)


#: The y axis of a task's plot.
Y_LABELS = {'seg': 'mIoU (%)', 'det': 'bbox AP (COCO points)'}


def plot(rows, path, level=0.95, task=stats.SEG):
    """Per backbone: the task's mean score against patch size (log2 axis, large p left) with CI
    error bars, a line per decoder role; the paired gap with its CI on a second axis.
    ``rows``: one task's."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    summary = stats.summarise(rows, level, task)
    backbones = sorted({r['backbone'] for r in rows})
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        ps = sorted({r['patch_size'] for r in rows if r['backbone'] == backbone}, reverse=True)
        x = {p: -np.log2(p) for p in ps}
        for role, style in ((task.plain, 'o-'), (task.decoder, 's--')):
            pts = [c for c in summary['cells'] if c['backbone'] == backbone and c[task.axis] == role]
            if pts:
                pts.sort(key=lambda c: x[c['patch_size']])
                ax.errorbar([x[c['patch_size']] for c in pts], [c['mean'] for c in pts],
                            yerr=[np.nan_to_num(c['half']) for c in pts], fmt=style, capsize=3,
                            label=f'{role} {task.axis} (n={max(c["n"] for c in pts)})')
        gaps = [g for g in summary['gaps'] if g['backbone'] == backbone]
        if gaps:
            ax2 = ax.twinx()
            ax2.bar([x[g['patch_size']] for g in gaps], [g['mean'] for g in gaps], width=0.3,
                    yerr=[np.nan_to_num(g['half']) for g in gaps], alpha=0.3, color='gray',
                    capsize=3, label=f'gap ({task.decoder_label} - {task.plain_label})')
            ax2.set_ylabel(f'gap ({task.metric_label} points)')
            ax2.axhline(0, color='gray', lw=0.5)
            ax2.legend(loc='lower right')
        ax.set_xticks(list(x.values()), [f'p{p}' for p in ps])
        ax.set_xlabel('patch size (log2 scale)')
        ax.set_ylabel(f'{Y_LABELS[task.name]}, mean ± {100 * level:g}% CI over seeds')
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
    """Writes the report of the finished cells: results.md, and per task a CSV and a plot
    (results.csv / results.png for a one-task sweep, results_<task>.csv / .png for a sweep of
    both). The model sizes (FLOPs on 'meta') and the segmentation cells' majority-class baseline
    are computed once per sweep, not per call. ``task_of_config``: config -> task, when the
    caller has read the configs; else they are read here (a bad config raises ``UserError``)."""

    def __init__(self, cells, work_dir, gpus=1, cfg_options=(), baseline=True,
                 task_of_config=None, cost_csv=None):
        self.cells, self.gpus, self.cfg_options = cells, gpus, list(cfg_options)
        self.cost = read_cost_table(cost_csv)  # the full-size configs' GPU-hours
        task_of_config = {c.config: (task_of_config or {}).get(c.config)
                          or task_of(load_config(c.config, self.cfg_options)) for c in cells}
        self.tasks = [t for t in stats.TASKS if t in task_of_config.values()]
        stem = (lambda task: osp.join(work_dir, 'results' if len(self.tasks) == 1
                                      else f'results_{task}'))
        self.csv_paths = {t: stem(t) + '.csv' for t in self.tasks}
        self.png_paths = {t: stem(t) + '.png' for t in self.tasks}
        self.md_path = osp.join(work_dir, 'results.md')
        self.sizes = {}
        self.seg_config = next((c for c, t in task_of_config.items() if t == 'seg'), None)
        self.want_baseline, self.baseline = baseline and self.seg_config is not None, None

    @property
    def files(self):
        """``(what, path)`` of the files written: the CSVs, the report, the plots."""
        return ([('results', p) for p in self.csv_paths.values()] + [('report', self.md_path)]
                + [('plot', p) for p in self.png_paths.values()])

    def __call__(self):
        """The Markdown report written, or None when no cell has finished."""
        with quiet_warnings(verbose=False):  # mmseg's noise when the models are built for FLOPs
            rows = collect(self.cells, self.gpus, self.cfg_options, self.sizes, cost=self.cost)
            if not rows:
                return None
            if self.baseline is None and self.want_baseline:
                self.baseline = baseline_from(self.seg_config, self.cfg_options)
        for task in tasks_in(rows):
            sub = [r for r in rows if task_of_row(r) == task]
            write_csv(sub, self.csv_paths[task])
            plot(sub, self.png_paths[task], task=stats.TASKS[task])
        unfinished = [c.key for c in self.cells if not c.is_done()]
        text = markdown_report(rows, self.baseline, unfinished)
        with open(self.md_path, 'w') as f:
            f.write(text + '\n')
        return text
