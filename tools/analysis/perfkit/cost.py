"""``benchmark.py cost``: what every config costs to train, as a user plans a paper.

For each config (default: every leaf of configs/ade20k and configs/coco), in a fresh process
(``benchmark.py cost-row``): the config is loaded (``mmpatch.apis.config.load_config``), its
model built through the registry of its scope (SyncBN reverted to BN, as mmengine's Runner
does without a launcher) and fed a synthetic batch of the config's own per-GPU batch size at
its training input (segmentation: ``crop_size`` crops with random labels; detection: 800 x 1333
images, padded to 800 x 1344 by the detector's preprocessor, with random boxes and masks), and
``model.train_step(data, optim_wrapper)`` is timed with the config's own optim_wrapper
(``build_optim_wrapper``: bf16 AmpOptimWrapper, layer decay, ``env_cfg.cudnn_benchmark`` as
the Runner sets it). The data loader is excluded. Out-of-memory, a first step slower than
``--max-step-s`` and a row past ``--row-timeout`` are results, not crashes.

Timing per row: the first iteration (cuDNN autotuning, allocator growth, optimizer state) is
untimed; if the row is quick, ``--warmup - 1`` more untimed ones, then ``--steps`` timed ones
(median); if not (first iteration x (warmup - 1 + steps) > ``--row-budget-s``), no more warm-up
and as many timed iterations as fit in ``--row-budget-s`` (at least one).

Not every row is timed: sizes in ``--project-sizes`` (default: S) and rows whose training step
exceeds ``--max-pflop-iter`` PFLOP per GPU (3 x forward FLOPs x batch: ViT-T/B at p1 on
ADE20K and at p2 on COCO, tens of seconds per iteration) are only counted (forward FLOPs on
fake tensors, ``mmpatch.utils.flops``) and projected from the measured rows
(``cost_report``). Forward FLOPs: the segmentor's ``mode='tensor'`` forward (backbone, neck,
decode head) for segmentation; the backbone and neck (``extract_feat``) for detection.

Each row's process imports, loads its config, builds its model and counts its FLOPs on the
CPU, then waits for its turn on the device: up to ``--prefetch`` rows prepare while one
row is timed (on other CPU cores, one thread each), so the imports (seconds per process) do
not add up; ``--prefetch 0`` prepares each row only after the previous one ended. This
process orchestrates and never touches the device. ``cost.{csv,md}`` are written to
``--out`` after every row (``cost_report``), so a cut run keeps what it measured;
``--time-limit-s``: rows whose turn comes later are not run (projected). Run order
(``order_plans``): B, then T, then other sizes, the tasks taking turns, with the rows only
counted spread between them.

    python tools/analysis/benchmark.py cost --out results/cost/<device>_<date>_<commit>
    python tools/analysis/benchmark.py cost --archs vit --sizes b --patch-sizes 16 8 --dry-run
    python tools/analysis/benchmark.py cost --device cpu --tiny --configs 'configs/ade20k/*t_p16*'
"""
import argparse
import glob
import importlib
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
import threading
import time

import torch

from .cost_report import env_of, train_tflop, write_report
from .utils import (BENCHMARK, OOM, RESULT_MARK, check_device, child_env, device_name,
                    free_device_memory, is_oom, median_step_seconds, peak_gib, print_result)

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
DEFAULT_CONFIGS = ('configs/ade20k/*.py', 'configs/coco/*.py')
LEAF = re.compile(r'^(?P<family>[a-z]+)_(?P<size>[a-z])_p(?P<p>\d+)_(?P<head>[a-z_]+)$')
READY_MARK = 'COST_ROW_READY '  # a row's process is prepared and waits for 'go' on stdin
DET_IMG_HW = (800, 1333)  # mmdet's Resize scale (1333, 800), keep ratio: the largest image
TINY_SEG_CROP = (64, 64)
TINY_DET_HW = (64, 96)
TINY_HEAD_CHANNELS = 16
# training images per epoch of the epoch-based datasets (COCO train2017)
DATASET_IMAGES = {'CocoDataset': 118287, 'CheckedCocoDataset': 118287}
TASKS = {'ADE20KDataset': 'ADE20K', 'CheckedADE20KDataset': 'ADE20K', 'CocoDataset': 'COCO',
         'CheckedCocoDataset': 'COCO'}
FAMILIES = {'PatchViT': ('vit', 'ViT'), 'PatchMamba': ('adventurer', 'Adventurer')}
HEADS = {'LinearHead': 'linear', 'UPerHead': 'upernet'}
DETECTORS = {'CascadeRCNN': 'cascade_mask_rcnn', 'MaskRCNN': 'mask_rcnn'}
GPUS = 8


class TooSlow(Exception):
    pass


# ------------------------------------------------------------------ what a config is

def schedule_iterations(cfg, gpus=GPUS):
    """Training iterations of the config's full schedule on ``gpus`` GPUs: ``max_iters``, or
    ``max_epochs x ceil(images / (batch per GPU x gpus))``."""
    train_cfg = cfg.train_cfg
    if train_cfg.get('max_iters'):
        return int(train_cfg.max_iters)
    dataset = cfg.train_dataloader.dataset.get('type')
    if dataset not in DATASET_IMAGES:
        raise ValueError(f'{dataset}: number of training images unknown; add it to '
                         f'DATASET_IMAGES in {__file__}')
    batch = cfg.train_dataloader.batch_size
    return int(train_cfg.max_epochs) * math.ceil(DATASET_IMAGES[dataset] / (batch * gpus))


def describe(cfg):
    """(task, family, arch label, size letter, patch size, head or detector) of a config."""
    backbone = cfg.model.backbone
    family, name = FAMILIES.get(backbone.type, (backbone.type.lower(), backbone.type))
    arch = backbone.get('arch', '')
    if isinstance(arch, str):
        size, label = arch[:1], f'{name}-{arch[:1].upper()}'
    else:
        size, label = None, f"{name} ({arch['embed_dims']}d)"
    if cfg.default_scope == 'mmdet':
        head = DETECTORS.get(cfg.model.type, cfg.model.type)
    else:
        head = HEADS.get(cfg.model.decode_head.type, cfg.model.decode_head.type)
    dataset = cfg.train_dataloader.dataset.get('type')
    return dict(task=TASKS.get(dataset, dataset), family=family, arch=label, size=size,
                p=int(backbone.patch_size), head=head)


def tokens_per_image(hw, patch_size):
    return math.ceil(hw[0] / patch_size) * math.ceil(hw[1] / patch_size)


def padded(hw, divisor):
    return tuple(math.ceil(s / divisor) * divisor for s in hw)


def shrink_seg_model_cfg(cfg, crop=TINY_SEG_CROP, channels=TINY_HEAD_CHANNELS):
    """A segmentation config's model made tiny in place (``--tiny``): tiny backbone arch,
    ``crop`` crops, heads ``channels`` wide; the structure (backbone type, patch size, neck,
    heads) stays the real one."""
    from .synthetic_det import TINY_ARCH
    model = cfg.model
    backbone = model.backbone
    if backbone.type not in TINY_ARCH:
        raise ValueError(f'no tiny arch for backbone type {backbone.type!r}; add one to '
                         f'TINY_ARCH ({sorted(TINY_ARCH)})')
    backbone.arch = dict(TINY_ARCH[backbone.type])
    backbone.img_size = crop
    out_indices = backbone.get('out_indices', -1)
    if isinstance(out_indices, (list, tuple)):  # one block per pyramid level
        backbone.arch['num_layers'] = len(out_indices)
        backbone.out_indices = tuple(range(len(out_indices)))
    width = backbone.arch['embed_dims']

    def widths(value):
        return [width] * len(value) if isinstance(value, (list, tuple)) else width
    cfg.crop_size = crop
    model.data_preprocessor.size = crop
    if model.get('neck'):
        model.neck.in_channels = widths(model.neck.in_channels)
    for head in (model.decode_head, model.get('auxiliary_head')):
        if head:
            head.in_channels = widths(head.in_channels)
            if 'channels' in head:
                head.channels = channels
    return cfg


# ------------------------------------------------------------------ one row (its own process)

def prepare(path, tiny, device, cfg_options=()):
    """Load, build and count one config on the CPU: ``(cfg, model, data, row)``."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    from mmpatch.apis.config import load_config
    from mmpatch.utils.flops import DetectorFeatures, count_flops_by_op

    cfg = load_config(path, list(cfg_options))
    scope = cfg.default_scope
    batch = cfg.train_dataloader.batch_size
    row = dict(config=osp.splitext(osp.basename(path))[0], **describe(cfg), batch=batch,
               iterations=schedule_iterations(cfg), with_cp=bool(cfg.model.backbone.get('with_cp')))
    if scope == 'mmdet':
        from .synthetic_det import shrink_det_model_cfg, synthetic_det_batch
        if tiny:
            shrink_det_model_cfg(cfg.model)
        img_hw = TINY_DET_HW if tiny else DET_IMG_HW
        hw = padded(img_hw, cfg.model.data_preprocessor.get('pad_size_divisor', 1))
    else:
        from .seg_configs import synthetic_batch
        if tiny:
            shrink_seg_model_cfg(cfg)
        hw = tuple(cfg.crop_size)
    if device.type != 'cuda' and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'  # mmengine's AmpOptimWrapper needs a GPU
        cfg.optim_wrapper.pop('dtype', None)
        cfg.optim_wrapper.pop('loss_scale', None)
    init_default_scope(scope)
    model = importlib.import_module(f'{scope}.registry').MODELS.build(cfg.model)
    model = revert_sync_batchnorm(model)
    if scope == 'mmdet':
        data = synthetic_det_batch([img_hw] * batch, num_boxes=5, seed=0)
        flops = count_flops_by_op(DetectorFeatures(model), (1, 3, *hw))
        scope_text = 'detection: backbone + neck (extract_feat), heads not counted'
    else:
        data = synthetic_batch(batch, hw, cfg.model.decode_head.num_classes)
        flops = count_flops_by_op(model, (1, 3, *hw), mode='tensor')
        scope_text = 'segmentation: backbone, neck, decode head (auxiliary head not counted)'
    row.update(tokens=tokens_per_image(hw, row['p']), input_hw=f'{hw[0]}x{hw[1]}',
               fwd_gflops=round(sum(flops.values()) / 1e9, 3), flops_scope=scope_text,
               params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
               optim=cfg.optim_wrapper.type + (f'/{cfg.optim_wrapper.dtype}'
                                               if 'dtype' in cfg.optim_wrapper else ''),
               torch=torch.__version__, tiny=tiny)
    return cfg, model, data, row


def timed_steps(step, device, warmup, steps, budget_s, max_step_s):
    """``(median seconds, timed iterations, first iteration's seconds)`` of ``step()``, as the
    module docstring says (the timed iterations by ``median_step_seconds``: CUDA events on a
    GPU); ``TooSlow`` if the first iteration took over ``max_step_s``."""
    start = time.perf_counter()
    step()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    first = time.perf_counter() - start
    if first > max_step_s:
        raise TooSlow(f'first iteration {first:.1f} s > --max-step-s {max_step_s:g}')
    if first * (warmup - 1 + steps) <= budget_s:
        more_warmup, n = warmup - 1, steps
    else:
        more_warmup, n = 0, max(1, min(steps, int(budget_s // first)))
    return median_step_seconds(step, more_warmup, n, device), n, first


def measure(cfg, model, data, device, args):
    """The timed part of a row: status, seconds per iteration, peak GiB, loss."""
    from mmengine.optim import build_optim_wrapper
    torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
    free_device_memory(device)
    out = {}
    try:
        model = model.to(device).train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        log_vars = {}
        seconds, n, first = timed_steps(
            lambda: log_vars.update(model.train_step(data, optim_wrapper)), device,
            args.warmup, args.steps, args.row_budget_s, args.max_step_s)
        loss = log_vars['loss']
        loss = float(loss.detach() if torch.is_tensor(loss) else loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f'non-finite training loss {loss}')
        out.update(status='measured', measured_s_per_iter=round(seconds, 4), timed_steps=n,
                   first_step_s=round(first, 2), loss=round(loss, 4))
    except TooSlow as err:
        out.update(status=f'too slow: {err}')
    except Exception as err:  # noqa: BLE001  (OOM and failures are results of the row)
        if is_oom(err):
            out.update(status=OOM)
        else:
            first_line = (str(err).strip().splitlines() or [''])[0][:150]
            out.update(status=f'error: {type(err).__name__}: {first_line}')
    peak = peak_gib(device)
    out.update(peak_gib=None if peak is None else round(peak, 2), device_name=device_name(device),
               pid=os.getpid())
    return out


def add_row_args(ap):
    """The options a row's process takes (``cost`` passes them on)."""
    ap.add_argument('--device', default='cuda', help='cuda or cpu')
    ap.add_argument('--tiny', action='store_true',
                    help='tiny stand-in models and inputs of the same structure (smoke test)')
    ap.add_argument('--warmup', type=int, default=2,
                    help='untimed iterations of a quick row, the first included (default 2)')
    ap.add_argument('--steps', type=int, default=3, help='timed iterations at most (default 3)')
    ap.add_argument('--row-budget-s', type=float, default=8.,
                    help='seconds of iterations after the first one (default 8)')
    ap.add_argument('--max-step-s', type=float, default=30.,
                    help='a first iteration slower than this stops the row: "too slow", '
                         'projected (default 30)')
    ap.add_argument('--max-pflop-iter', type=float, default=2.,
                    help='rows above this many PFLOP per training iteration and GPU are not '
                         'timed, only projected (default 2: about 6 s per iteration on an H200)')
    ap.add_argument('--cfg-options', nargs='+', default=[],
                    help='config overrides for every row, key=value')


def check_row_args(args):
    if args.warmup < 1 or args.steps < 1 or args.row_budget_s <= 0 or args.max_step_s <= 0:
        raise SystemExit('cost: --warmup and --steps must be >= 1, --row-budget-s and '
                         '--max-step-s > 0')


def row_main(argv):
    """``benchmark.py cost-row CONFIG [options]``: one row, in this process."""
    ap = argparse.ArgumentParser(prog='benchmark.py cost-row', description=row_main.__doc__)
    ap.add_argument('config')
    add_row_args(ap)
    ap.add_argument('--project-only', metavar='REASON',
                    help='count FLOPs only, the row not timed for REASON')
    ap.add_argument('--wait-go', action='store_true',
                    help='after preparing, print a ready line and wait for "go" on stdin '
                         '(how cost runs its rows)')
    args = ap.parse_args(argv)
    check_row_args(args)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    if args.wait_go or args.project_only:
        torch.set_num_threads(1)  # preparing beside a row being timed: one core
    cfg, model, data, row = prepare(args.config, args.tiny, device, args.cfg_options)
    pflop = train_tflop(row) / 1e3
    reason = args.project_only or (pflop > args.max_pflop_iter and
                                   f'{pflop:.2g} PFLOP per iteration > --max-pflop-iter '
                                   f'{args.max_pflop_iter:g}')
    if reason:
        row['status'] = f'not run: {reason}'
        print_result(dict(row=row))
        return row
    check_device(device)
    if device.type == 'cuda':
        try:
            torch.empty(1, device=device)  # the CUDA context, before the turn
        except RuntimeError as err:  # e.g. a GPU in exclusive-process mode: after the turn
            print(f'CUDA context not made before the turn: {err}', flush=True)
    if args.wait_go:
        print(READY_MARK + json.dumps(row), flush=True)
        if sys.stdin.readline().strip() != 'go':
            row['status'] = 'not run: --time-limit-s'
            print_result(dict(row=row))
            return row
        torch.set_num_threads(threads)
    row.update(measure(cfg, model, data, device, args))
    del model, data
    free_device_memory(device)  # before the result: the next row starts on it
    print_result(dict(row=row))
    return row


# ------------------------------------------------------------------ the orchestrator

class RowProcess:
    """``python script *argv`` preparing a row: its output streams through (prefixed with the
    row's name), its ready line and result are kept; ``go()`` gives it the device."""

    def __init__(self, script, argv, name):
        self.name, self.started = name, time.monotonic()
        self.ready_row, self.result, self.tail = None, None, []
        self.ready = threading.Event()
        self.proc = subprocess.Popen([sys.executable, script, *map(str, argv)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=child_env())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(READY_MARK):
                self.ready_row = json.loads(line[len(READY_MARK):])
                self.ready.set()
            elif line.startswith(RESULT_MARK):
                self.result = json.loads(line[len(RESULT_MARK):])
                self.ready.set()
            else:
                sys.stdout.write(f'[{self.name}] {line}')
                self.tail = (self.tail + [line.rstrip()])[-12:]
        self.proc.wait()
        self.ready.set()

    def _send(self, word):
        try:
            self.proc.stdin.write(word + '\n')
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)

    def _failed(self, status):
        last = next((t for t in reversed(self.tail) if t.strip()), '')
        row = dict(self.ready_row or dict(config=self.name))
        row['status'] = status + (f': {last[:150]}' if last and 'killed' not in status else '')
        return row

    def run(self, prep_timeout, row_timeout, may_start=True):
        """Wait until prepared, then (if ``may_start``) let it run; its row."""
        if not self.ready.wait(max(0., self.started + prep_timeout - time.monotonic())):
            self.kill()
            return self._failed(f'error: killed after {prep_timeout:g} s preparing')
        if self.result is None and self.ready_row is not None:
            if not may_start:
                self._send('stop')
                self.reader.join(30)
                row = dict(self.ready_row, status='not run: --time-limit-s')
                self.kill()
                return row
            self._send('go')
            deadline = time.monotonic() + row_timeout
            while self.result is None and self.reader.is_alive() and time.monotonic() < deadline:
                self.reader.join(0.2)
            if self.result is None and self.reader.is_alive():
                self.kill()
                return self._failed(f'timeout: killed after {row_timeout:g} s')
        if self.result is None:
            self.reader.join(5)
        if self.result is None:
            self.proc.wait()
            return self._failed(f'error: exit code {self.proc.returncode}')
        return self.result['row']


def run_rows(plans, script=BENCHMARK, prefetch=4, prep_timeout=900., row_timeout=180.,
             time_limit_s=None, on_row=None):
    """Each plan ``(name, argv)`` as a ``RowProcess``, one on the device at a time, with up
    to ``prefetch`` more preparing meanwhile; the rows in plan order."""
    start, rows, procs = time.monotonic(), [], {}
    for i, (name, _) in enumerate(plans):
        for j in range(len(procs) + len(rows), min(len(plans), i + 1 + prefetch)):
            procs[j] = RowProcess(script, plans[j][1], plans[j][0])
        proc = procs.pop(i)
        may_start = time_limit_s is None or time.monotonic() - start < time_limit_s
        try:
            rows.append(proc.run(prep_timeout, row_timeout, may_start))
        except BaseException:
            for p in [proc, *procs.values()]:
                p.kill()
            raise
        print(f'[{name}] {rows[-1].get("status")}', flush=True)
        if on_row:
            on_row(rows)
    return rows


def select_configs(patterns, archs=None, sizes=None, patch_sizes=None, heads=None):
    """Config paths matching ``patterns`` (globs, relative to the repository root or the
    working directory), filtered by the fields of their names ``{arch}_{size}_p{p}_{head}``
    (a name not of that form matches no filter)."""
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) or sorted(glob.glob(osp.join(REPO, pattern)))
        if not found:
            raise SystemExit(f'cost: no config matches {pattern!r}; give config files or globs '
                             'such as configs/ade20k/vit_b_*.py')
        paths += [p for p in found if p not in paths]
    filters = dict(family=archs, size=sizes, p=patch_sizes and [str(p) for p in patch_sizes],
                   head=heads)
    if not any(filters.values()):
        return paths
    kept = []
    for path in paths:
        leaf = LEAF.match(osp.splitext(osp.basename(path))[0])
        if leaf and all(not want or leaf[key] in want for key, want in filters.items()):
            kept.append(path)
    return kept


def plan_rows(paths, args):
    """``(name, argv of cost-row)`` per config; sizes in ``--project-sizes`` only counted."""
    passed = ['--device', args.device, '--warmup', args.warmup, '--steps', args.steps,
              '--row-budget-s', args.row_budget_s, '--max-step-s', args.max_step_s,
              '--max-pflop-iter', args.max_pflop_iter] + (['--tiny'] if args.tiny else [])
    if args.cfg_options:
        passed += ['--cfg-options', *args.cfg_options]
    plans = []
    for path in paths:
        name = osp.splitext(osp.basename(path))[0]
        leaf = LEAF.match(name)
        extra = ['--wait-go']
        if leaf and leaf['size'] in args.project_sizes:
            extra = ['--project-only', f'size {leaf["size"].upper()} (--project-sizes)']
        plans.append((name, ['cost-row', path, *passed, *extra]))
    return plans


def default_prefetch():
    return min(6, max(1, (os.cpu_count() or 2) // 2 - 1))


def order_plans(plans, sizes_first=('b', 't')):
    """The plans in run order. Timed rows: sizes in ``sizes_first`` order, then the others;
    within a size the config folders (tasks) take turns, so a run cut by ``--time-limit-s``
    loses the tail of every task alike. The rows only counted (``--project-only``) are spread
    evenly between them: they prepare beside the timed rows."""
    def size(plan):
        leaf = LEAF.match(plan[0])
        return sizes_first.index(leaf['size']) if leaf and leaf['size'] in sizes_first \
            else len(sizes_first)
    counted = [p for p in plans if '--project-only' in p[1]]
    timed = []
    for rank in sorted({size(p) for p in plans if p not in counted}):
        folders = {}
        for plan in plans:
            if plan not in counted and size(plan) == rank:
                folders.setdefault(osp.dirname(plan[1][1]), []).append(plan)
        queues = list(folders.values())
        while any(queues):
            timed += [q.pop(0) for q in queues if q]
    ordered = list(timed)
    for k, plan in enumerate(counted):
        ordered.insert(round((k + 0.5) * len(timed) / len(counted)) + k, plan)
    return ordered


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog='benchmark.py cost', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--configs', nargs='+', default=list(DEFAULT_CONFIGS),
                    help='config files or globs (default: every leaf of configs/ade20k and '
                         'configs/coco)')
    ap.add_argument('--archs', nargs='+', help='only these, e.g. vit adventurer')
    ap.add_argument('--sizes', nargs='+', help='only these, e.g. t b')
    ap.add_argument('--patch-sizes', type=int, nargs='+', help='only these, e.g. 16 8')
    ap.add_argument('--heads', nargs='+',
                    help='only these, e.g. linear upernet cascade_mask_rcnn mask_rcnn')
    ap.add_argument('--project-sizes', nargs='*', default=['s'],
                    help='sizes not timed, only projected (default: s; none: time every size)')
    add_row_args(ap)
    ap.add_argument('--prefetch', type=int, default=default_prefetch(),
                    help='rows preparing (imports, model, FLOPs) while one is timed (default: '
                         f'half the CPU cores less one, at most 6: here {default_prefetch()})')
    ap.add_argument('--row-timeout', type=float, default=180.,
                    help='seconds a row may run once on the device (default 180)')
    ap.add_argument('--prep-timeout', type=float, default=900.,
                    help='seconds a row may take to prepare (default 900)')
    ap.add_argument('--time-limit-s', type=float, default=None,
                    help='rows whose turn comes after this many seconds are not run')
    ap.add_argument('--dry-run', action='store_true', help='print the rows and what they run')
    ap.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/cost',
                    help='output folder (default: $OUT, else work_dirs/cost)')
    return ap.parse_args(argv)


def main(argv=None):
    """The table; this process orchestrates and never touches the device."""
    args = parse_args(argv)
    check_row_args(args)
    if args.prefetch < 0:
        raise SystemExit('cost: --prefetch must be >= 0')
    paths = select_configs(args.configs, args.archs, args.sizes, args.patch_sizes, args.heads)
    if not paths:
        raise SystemExit('cost: the filters leave no config; check --archs/--sizes/'
                         '--patch-sizes/--heads against the names in --configs')
    plans = order_plans(plan_rows(paths, args))
    if args.dry_run:
        for name, argv in plans:
            print(name, ' '.join(map(str, argv[1:])))
        return plans
    os.makedirs(args.out, exist_ok=True)

    def write(rows):
        write_report([dict(r) for r in rows], args.out, env_of(rows))
    rows = run_rows(plans, prefetch=args.prefetch, prep_timeout=args.prep_timeout,
                    row_timeout=args.row_timeout, time_limit_s=args.time_limit_s, on_row=write)
    with open(osp.join(args.out, 'cost.md')) as f:
        print('\n' + f.read())
    return rows
