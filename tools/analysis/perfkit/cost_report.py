"""``benchmark.py cost-report``: the cost tables (``cost.{csv,md}``) from the rows of ``cost`` runs.

Every row of ``benchmark.py cost`` is either measured (seconds per training iteration on one
GPU) or not (too slow, out of memory, a size not timed, not run). Here each row gets its
full-schedule cost:

- iterations: the config's own schedule, ``train_cfg.max_iters`` (ADE20K: 160,000), or
  ``max_epochs x ceil(images / (batch per GPU x 8 GPUs))`` for an epoch-based one (COCO:
  12 x ceil(118,287 / 16) = 88,716; ``benchmark.py cost`` records the number per row);
- GPU-hours = s/iter x iterations x 8 GPUs / 3600, and days on 8 GPUs = s/iter x
  iterations / 86400: the paper's setting (total batch 16 = 2 per GPU x 8 GPUs), assuming
  the 8-GPU step takes as long as the one-GPU step measured (no all-reduce, no data loader);
- a row not measured is projected from FLOPs: its forward FLOPs per image x 3 (forward +
  backward) x batch, divided by an achieved model TFLOP/s of the measured configs of its
  family (same backbone kind, same head or detector; of the same size where that size has
  measured rows): interpolated in log(tokens per image) between the nearest measured rows with
  fewer and with more tokens, else the nearest one's (``reference_rate``). Such rows say
  ``projected at R TFLOP/s, interpolated between A and B`` or ``projected from <config>``.

``cost-report --inputs DIR [DIR ...] --out DIR`` merges the ``cost.csv`` of several runs (a
measured row beats a projected one; between two measured rows, the later input wins) and
writes the tables again.
"""
import argparse
import math
import os
import os.path as osp

from .utils import OOM, markdown_table, read_csv, write_csv

GPUS = 8  # the paper's setting: total batch 16 = 2 per GPU x 8 GPUs
MEASURED = 'measured'
SIZE_ORDER = {'t': 0, 's': 1, 'b': 2, 'l': 3}
# what the cost command records per row; the rest of a cost.csv row is derived here
DERIVED = ('model_tflops', 's_per_iter', 'gpu_hours', 'days_8gpu', 'source')
TABLE_COLUMNS = [('config', 'config'), ('arch', 'arch'), ('p', 'p'), ('head', 'head/detector'),
                 ('tokens', 'tokens'), ('batch', 'batch/GPU'), ('s_per_iter', 's/iter'),
                 ('peak_gib', 'peak GiB/GPU'), ('gpu_hours', 'GPU-hours, full schedule'),
                 ('days_8gpu', 'days on 8 GPUs'), ('source', 'measured / projected')]


def train_tflop(row):
    """Model TFLOP of one training iteration on one GPU: 3 x forward FLOPs x batch."""
    return 3 * row['fwd_gflops'] * row['batch'] / 1e3


def is_measured(row):
    return (row.get('status') == MEASURED
            and isinstance(row.get('measured_s_per_iter'), (int, float)))


def _rate(row):
    """Achieved model TFLOP/s of a measured row."""
    return train_tflop(row) / row['measured_s_per_iter']


def reference_rate(row, measured):
    """(TFLOP/s, how) to project ``row`` at, from the measured rows of its family (same task,
    backbone kind and head/detector; of its own size where that size has measured rows): the
    achieved rate interpolated linearly in log(tokens) between the nearest measured rows with
    fewer and with more tokens per image (a short step at few tokens is launch-bound, a long one
    at many tokens runs near the matmul rate, so neither end alone predicts the middle), else
    the rate of the nearest one (log tokens, then FLOPs). None if nothing is measured."""
    if not row.get('fwd_gflops') or not row.get('tokens'):
        return None
    family = [m for m in measured if (m['task'], m['family'], m['head']) ==
              (row['task'], row['family'], row['head']) and m is not row]
    same_size = [m for m in family if m.get('size') == row.get('size')]
    family = same_size or family
    if not family:
        return None
    log_t = math.log(row['tokens'])

    def nearest(rows):
        return min(rows, key=lambda m: (round(abs(log_t - math.log(m['tokens'])), 9),
                                        abs(math.log(row['fwd_gflops'] / m['fwd_gflops']))))

    below = [m for m in family if m['tokens'] < row['tokens']]
    above = [m for m in family if m['tokens'] > row['tokens']]
    if below and above:
        lo, hi = nearest(below), nearest(above)
        w = (log_t - math.log(lo['tokens'])) / (math.log(hi['tokens']) - math.log(lo['tokens']))
        rate = math.exp((1 - w) * math.log(_rate(lo)) + w * math.log(_rate(hi)))
        return rate, (f"projected at {rate:.3g} TFLOP/s, interpolated between {lo['config']} "
                      f"({_rate(lo):.3g}) and {hi['config']} ({_rate(hi):.3g})")
    ref = nearest(family)
    return _rate(ref), f"projected from {ref['config']} ({_rate(ref):.3g} TFLOP/s)"


def project(rows):
    """``rows`` with the derived columns (``DERIVED``) filled in, in place; returns them."""
    measured = [r for r in rows if is_measured(r) and r.get('fwd_gflops')]
    for r in rows:
        for key in DERIVED:
            r.pop(key, None)
        if is_measured(r):
            r['s_per_iter'] = r['measured_s_per_iter']
            r['source'] = MEASURED
            if r.get('fwd_gflops'):
                r['model_tflops'] = round(train_tflop(r) / r['s_per_iter'], 1)
        else:
            ref = reference_rate(r, measured)
            if ref is None:
                r['source'] = f"{r.get('status', 'not run')}; nothing measured to project from"
            else:
                rate, how = ref
                r['s_per_iter'] = round(train_tflop(r) / rate, 4)
                r['source'] = f"{how}; {r.get('status', 'not run')}"
        if r.get('s_per_iter') and r.get('iterations'):
            seconds = r['s_per_iter'] * r['iterations']
            r['gpu_hours'] = round(seconds * GPUS / 3600, 1)
            r['days_8gpu'] = round(seconds / 86400, 2)
    return rows


def merge(row_lists):
    """One row per config: a measured row beats one that is not; otherwise the later wins."""
    merged = {}
    for rows in row_lists:
        for r in rows:
            old = merged.get(r['config'])
            if old is None or is_measured(r) or not is_measured(old):
                merged[r['config']] = dict(r)
    return list(merged.values())


def sort_key(row):
    return (row.get('task', ''), row.get('family', ''), row.get('head', ''),
            SIZE_ORDER.get(row.get('size'), 9), -(row.get('p') or 0), row['config'])


def _cell(key, value):
    if value is None:
        return ''
    if key in ('gpu_hours', 'days_8gpu') and isinstance(value, float):
        return f'{value:,.0f}' if value >= 100 else f'{value:.3g}'
    if key == 'tokens' and isinstance(value, int):
        return f'{value:,}'
    return value


def table_value(row, key):
    """A row's value in the Markdown table: peak memory only where measured ('OOM' where the
    GPU ran out of memory)."""
    if key == 'peak_gib' and not is_measured(row):
        return OOM if row.get('status') == OOM else None
    return row.get(key)


def task_notes(task, rows):
    """The lines above a task's table: the schedule and what was measured."""
    iterations = sorted({r['iterations'] for r in rows if r.get('iterations')})
    its = ', '.join(f'{i:,}' for i in iterations)
    scopes = sorted({r['flops_scope'] for r in rows if r.get('flops_scope')})
    inputs = sorted({r['input_hw'] for r in rows if r.get('input_hw')})
    lines = [f'## {task}', '',
             f'Full schedule: {its} iterations'
             + (' (train_cfg.max_iters)' if task == 'ADE20K' else
                ' (max_epochs x ceil(118,287 train2017 images / (batch per GPU x 8 GPUs)); '
                "mmdet drops the ~1% without annotations, so it is an upper bound)"
                if task == 'COCO' else '') + '.',
             f"Input: {', '.join(inputs)} per image"
             + (' (the largest the keep-ratio resize to 1333 x 800 gives, padded to 32: '
                'most COCO batches are smaller, so the measured rows are upper bounds)'
                if task == 'COCO' else ' (the training crop)') + '.',
             f"FLOPs for projection: {'; '.join(scopes)}.",
             f"Optimizer wrapper: {', '.join(sorted({r['optim'] for r in rows if r.get('optim')}))}"
             '.', '']
    return lines


def markdown(rows, env):
    """``cost.md``: the notes, then one table per task."""
    device = env.get('device_name') or 'unknown device'
    out = ['# What each config costs to train', '',
           f'Measured on one {device} (torch {env.get("torch", "?")}): `model.train_step` '
           '(forward, backward, optimizer step with the config\'s own optim_wrapper, layer '
           'decay and activation checkpointing as configured) on a '
           'synthetic batch of the config\'s per-GPU batch size already on the GPU: the data '
           'loader is excluded, and so are the 8-GPU all-reduce and SyncBN traffic. s/iter: '
           f'median of the timed iterations after warm-up. GPU-hours = s/iter x iterations x '
           f'{GPUS} / 3600; days on {GPUS} GPUs = s/iter x iterations / 86400. Peak GiB: '
           'torch.cuda.max_memory_allocated (DDP adds gradient buckets of about the '
           'parameters\' size). Rows not measured are projected from FLOPs at the achieved '
           'model TFLOP/s (3 x forward FLOPs x batch / s_per_iter) of the measured configs '
           'of the same family, interpolated in log tokens between the nearest with fewer and '
           'with more tokens (see each row); no peak memory for them.', '']
    if env.get('tiny'):
        out += ['**Smoke run (`--tiny`): tiny stand-in models, not the configs\' costs.**', '']
    for task in sorted({r.get('task', '?') for r in rows}):
        sub = sorted((r for r in rows if r.get('task', '?') == task), key=sort_key)
        out += task_notes(task, sub)
        table_rows = [{title: _cell(key, table_value(r, key)) for key, title in TABLE_COLUMNS}
                      for r in sub]
        out += [markdown_table(table_rows, [title for _, title in TABLE_COLUMNS]), '']
    return '\n'.join(out)


def write_report(rows, out, env):
    """Project ``rows`` and write ``cost.csv`` and ``cost.md`` to ``out``; the rows, sorted."""
    rows = sorted(project(rows), key=sort_key)
    os.makedirs(out, exist_ok=True)
    write_csv(osp.join(out, 'cost.csv'), rows)
    with open(osp.join(out, 'cost.md'), 'w') as f:
        f.write(markdown(rows, env) + '\n')
    return rows


def env_of(rows):
    """The run's settings as the rows recorded them (first value seen)."""
    env = {}
    for key in ('device_name', 'torch', 'tiny'):
        env[key] = next((r[key] for r in rows if r.get(key) not in (None, '')), None)
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(prog='benchmark.py cost-report', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--inputs', nargs='+', required=True,
                    help='folders of cost runs (each with a cost.csv), earliest first')
    ap.add_argument('--out', required=True, help='folder for the merged cost.{csv,md}')
    args = ap.parse_args(argv)
    lists = []
    for folder in args.inputs:
        path = osp.join(folder, 'cost.csv')
        if not osp.isfile(path):
            raise SystemExit(f'cost-report: no {path}; give folders written by benchmark.py cost')
        lists.append(read_csv(path))
    rows = merge(lists)
    rows = write_report(rows, args.out, env_of(rows))
    print(markdown(rows, env_of(rows)))
    return rows
