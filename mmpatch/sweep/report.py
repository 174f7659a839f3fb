"""Aggregate sweep cells into results.csv, a Markdown table and a plot.

Every number is read from what mmengine wrote (``vis_data/scalars.json`` of
training, the ``<timestamp>.json`` of ``tools/test.py``) or measured from the
config's model (parameters, FLOPs); none is typed in.
"""
import csv
import glob
import json
import os.path as osp
import statistics

import numpy as np
import torch

HEAD_NAMES = {'LinearHead': 'linear', 'UPerHead': 'upernet'}


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


def read_train_scalars(cell_dir, skip_first=5):
    """Median seconds/iter and peak memory (MB, CUDA only) from mmengine's scalars.json."""
    times, mems = [], []
    for path in glob.glob(osp.join(cell_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'time' in rec and 'loss' in rec:
                    times.append(rec['time'])
                    if 'memory' in rec:
                        mems.append(rec['memory'])
    times = times[skip_first:] or times
    return (statistics.median(times) if times else None), (max(mems) if mems else None)


def describe_model(cfg):
    """(backbone label, patch size, head name) from the config itself."""
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    arch = backbone.get('arch', '')
    if not isinstance(arch, str):  # explicit numbers, e.g. a toy-size model
        arch = f"{arch['embed_dims']}d x {arch['num_layers']} blocks"
    label = f"{backbone['type']} ({arch})"
    return label, int(backbone['patch_size']), HEAD_NAMES.get(head['type'], head['type'])


def measure_model(cfg, input_hw):
    """Parameters (M) and forward GFLOPs of the config's segmentor on one input."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import mmpatch.models  # noqa: F401  (registers the backbones and heads)
    from mmpatch.utils.flops import count_forward_flops
    init_default_scope(cfg.get('default_scope', 'mmseg'))
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


def load_config(path, cfg_options=()):
    """The cell's config with the sweep's ``--cfg-options`` (``key=value`` strings) applied."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(path)
    overrides = {}
    for item in cfg_options:
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'--cfg-options takes key=value, got {item!r}')
        overrides[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(overrides)
    return cfg


def collect(cells, gpus=1, cfg_options=(), sizes=None):
    """One dict per finished cell. ``sizes``: a dict caching each config's (params M, GFLOPs)
    between calls."""
    sizes = {} if sizes is None else sizes
    rows = []
    for cell in cells:
        if not cell.is_done():
            continue
        cfg = load_config(cell.config, cfg_options)
        backbone, p, head = describe_model(cfg)
        metrics = read_test_metrics(cell.work_dir)
        sec_per_iter, peak_mb = read_train_scalars(cell.work_dir)
        crop = tuple(cfg.get('crop_size', (512, 512)))
        if cell.config not in sizes:
            sizes[cell.config] = measure_model(cfg, crop)
        params, gflops = sizes[cell.config]
        batch = cfg.train_dataloader.batch_size * gpus
        rows.append(dict(
            config=cell.name, backbone=backbone, patch_size=p, head=head,
            mIoU=metrics.get('mIoU'), aAcc=metrics.get('aAcc'),
            params_M=round(params, 3), gflops=round(gflops, 3),
            train_img_s=round(batch / sec_per_iter, 2) if sec_per_iter else None,
            peak_mem_MB=peak_mb))
    return rows


def write_csv(rows, path):
    if not rows:
        raise ValueError('no finished cells to report')
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v, nd=1):
    return '-' if v is None else (f'{v:.{nd}f}' if isinstance(v, float) else str(v))


def markdown_table(rows, baseline_miou=None, unfinished=()):
    """Per backbone: rows = patch size; linear vs UperNet mIoU, gap and costs.

    ``unfinished`` names the grid's cells without a result, listed under the table.
    """
    out = []
    for backbone in sorted({r['backbone'] for r in rows}):
        by = {(r['patch_size'], r['head']): r for r in rows if r['backbone'] == backbone}
        out += [f'### {backbone}', '',
                '| patch | linear mIoU | UperNet mIoU | gap (UperNet - linear) | params M (lin / Uper) '
                '| GFLOPs (lin / Uper) | train img/s (lin / Uper) | peak mem MB (lin / Uper) |',
                '|---|---|---|---|---|---|---|---|']
        for p in sorted({k[0] for k in by}, reverse=True):
            lin, up = by.get((p, 'linear'), {}), by.get((p, 'upernet'), {})
            gap = (up['mIoU'] - lin['mIoU']) if lin.get('mIoU') is not None and up.get('mIoU') is not None else None
            pair = lambda k, nd=1: f"{_fmt(lin.get(k), nd)} / {_fmt(up.get(k), nd)}"  # noqa: E731
            out.append(f"| {p} | {_fmt(lin.get('mIoU'), 2)} | {_fmt(up.get('mIoU'), 2)} | {_fmt(gap, 2)} "
                       f"| {pair('params_M', 2)} | {pair('gflops', 2)} | {pair('train_img_s')} | {pair('peak_mem_MB', 0)} |")
        out.append('')
    if unfinished:
        out += [f'No result yet, not in the table: {", ".join(unfinished)}.', '']
    if baseline_miou is not None:
        out.append(f'Sanity: predicting the majority class everywhere gives mIoU {baseline_miou:.2f}.')
    return '\n'.join(out)


def plot(rows, path):
    """mIoU against patch size (log2 axis, p16 left to p1 right), a line per head, the gap as bars."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    backbones = sorted({r['backbone'] for r in rows})
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        sub = [r for r in rows if r['backbone'] == backbone and r['mIoU'] is not None]
        ps = sorted({r['patch_size'] for r in sub}, reverse=True)
        x = {p: -np.log2(p) for p in ps}
        for head, style in (('linear', 'o-'), ('upernet', 's--')):
            pts = sorted((x[r['patch_size']], r['mIoU']) for r in sub if r['head'] == head)
            if pts:
                ax.plot(*zip(*pts), style, label=f'{head} head')
        gaps = [(x[p], u['mIoU'] - l['mIoU']) for p in ps
                for l in sub if l['patch_size'] == p and l['head'] == 'linear'
                for u in sub if u['patch_size'] == p and u['head'] == 'upernet']
        if gaps:
            ax2 = ax.twinx()
            ax2.bar(*zip(*gaps), width=0.3, alpha=0.3, color='gray', label='gap (UperNet - linear)')
            ax2.set_ylabel('gap (mIoU points)')
            ax2.axhline(0, color='gray', lw=0.5)
            ax2.legend(loc='lower right')
        ax.set_xticks(list(x.values()), [f'p{p}' for p in ps])
        ax.set_xlabel('patch size (log2 scale)')
        ax.set_ylabel('mIoU (%)')
        ax.set_title(backbone)
        ax.legend(loc='upper left')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
