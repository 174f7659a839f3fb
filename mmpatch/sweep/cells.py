"""Sweep cells: one (config, seed) each, trained and tested by mmpatch's train/test entry points.

A cell's work dir (``<sweep>/<config name>/seed<k>``) holds what mmengine writes (logs,
``vis_data/scalars.json`` with the validation curve, checkpoints), the test's metrics and
per-image statistics under ``test/``, and, once its test finished, ``done.json``. A cell with
``done.json`` is skipped, and a half-trained one resumes from its last checkpoint, so an
interrupted sweep goes on where it stopped.

The seed reaches the config as ``randomness.seed``: mmengine seeds the model's initialisation,
the sampler's shuffling and the transforms' random draws from it.

Where cells run (``run_cells``):
- one at a time in this process (the default on one device): the packages are imported
  once, and kernels compiled or autotuned for one cell (Triton, cuDNN) serve the next;
- ``jobs`` at a time in worker processes (``jobs > 1``), each worker with ``cpu_count // jobs``
  threads: on a CPU, two one-thread cells train faster together than two two-thread cells in
  turn;
- each in a fresh worker process (``isolate``);
- under torchrun (``gpus > 1``) or a launcher (``python -m mmpatch.engine.cli ...``).
"""
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

PER_IMAGE_METRIC = 'PerImageIoUMetric'


@dataclass(frozen=True)
class Cell:
    config: str
    seed: int
    work_dir: str

    @property
    def name(self):
        return osp.splitext(osp.basename(self.config))[0]

    @property
    def key(self):
        return f'{self.name}/seed{self.seed}'

    @property
    def done_file(self):
        return osp.join(self.work_dir, 'done.json')

    def is_done(self):
        return osp.isfile(self.done_file)


def make_cells(configs, seeds, sweep_dir):
    """Cells seed by seed (every config of seed 0 first), so a sweep cut short has whole seeds."""
    missing = [c for c in configs if not osp.isfile(c)]
    if missing:
        raise FileNotFoundError(f'sweep: config not found: {", ".join(missing)}')
    names = [osp.splitext(osp.basename(c))[0] for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f'sweep: two configs share the name {dupes}; cells are keyed by file name')
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f'sweep: --seeds must name distinct seeds, got {list(seeds)}')
    return [Cell(c, int(s), osp.join(sweep_dir, n, f'seed{s}'))
            for s in seeds for c, n in zip(configs, names)]


# ----------------------------------------------------------------------------- one cell
NO_TRAIN_VAL = 'train_cfg.val_begin=1000000000'  # validation never starts during training


def _cfg_options_args(options):
    return ['--cfg-options', *options] if options else []


def cell_args(cell, cfg_options=(), iters_scale=None, train_val=True, per_image=False):
    """The train and test arguments of ``cell`` (the checkpoint is added once training ends)."""
    common = [*cfg_options, f'randomness.seed={cell.seed}']
    train = [cell.config, '--work-dir', cell.work_dir, '--resume',
             *(['--iters-scale', str(iters_scale)] if iters_scale not in (None, 1) else []),
             *_cfg_options_args([*common, *([] if train_val else [NO_TRAIN_VAL])])]
    test_dir = osp.join(cell.work_dir, 'test')
    test_options = [*common, *([f'test_evaluator.per_image_file={per_image_file(cell)}']
                               if per_image else [])]
    test = [cell.config, '--work-dir', test_dir, *_cfg_options_args(test_options)]
    return train, test


def per_image_file(cell):
    return osp.join(cell.work_dir, 'test', 'per_image.npz')


def run_cell(cell, gpus=1, launcher='none', cfg_options=(), iters_scale=None, train_val=True,
             per_image=False):
    """Train (resuming a partial run) and test one cell; write done.json.

    ``train_val=False`` skips the config's validation during training (no convergence curve);
    the cell is tested afterwards either way. ``per_image``: the config's test evaluator is a
    ``PerImageIoUMetric``, which then saves the per-image statistics for the bootstrap.
    """
    os.makedirs(cell.work_dir, exist_ok=True)
    log_path = osp.join(cell.work_dir, 'sweep.log')
    train_args, test_args = cell_args(cell, cfg_options, iters_scale, train_val, per_image)
    t0 = time.time()
    _launch('train', train_args, gpus, launcher, log_path)
    t_train = time.time() - t0
    ckpt = last_checkpoint(cell.work_dir)
    _launch('test', [test_args[0], ckpt, *test_args[1:]], gpus, launcher, log_path)
    with open(cell.done_file, 'w') as f:
        json.dump(dict(config=cell.config, seed=cell.seed, checkpoint=ckpt,
                       iters_scale=iters_scale or 1, train_seconds=t_train,
                       test_seconds=time.time() - t0 - t_train), f, indent=1)


def last_checkpoint(work_dir):
    """The checkpoint named by mmengine's ``last_checkpoint`` file."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'no last_checkpoint in {work_dir}: did training save one?')
    with open(marker) as f:
        return f.read().strip()


def _launch(command, args, gpus, launcher, log_path):
    """mmpatch's ``train`` / ``test`` entry point on ``args``: in this process, or under
    torchrun (``gpus > 1``) or a launcher as ``python -m mmpatch.engine.cli``."""
    if gpus == 1 and launcher == 'none':
        return _run_in_process(command, args, log_path)
    if gpus > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
               f'--master_port={29500 + os.getpid() % 1000}',
               '-m', 'mmpatch.engine.cli', command, *args, '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, '-m', 'mmpatch.engine.cli', command, *args, '--launcher', launcher]
    with open(log_path, 'a') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{command} failed (exit {proc.returncode}); see {log_path}')


def _run_in_process(command, args, log_path):
    """The ``train`` / ``test`` entry point on ``args`` in this process, output to log_path."""
    from mmpatch.engine import cli
    main = {'train': cli.train_main, 'test': cli.test_main}[command]
    with new_mmengine_instances_dropped(), open(log_path, 'a') as log:
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    main(args)
                except SystemExit as e:  # argparse
                    if e.code not in (0, None):
                        raise RuntimeError(f'{command} failed (exit {e.code}); see {log_path}')
                except Exception as e:  # one line as the tool prints it, else the traceback
                    failure = cli.known_failure(e)
                    if failure is None:
                        traceback.print_exc()
                    detail = failure[0] if failure else f'{type(e).__name__}: {e}'
                    print(f'{command}: error: {detail}', file=sys.stderr)
                    raise RuntimeError(f'{command} failed: {detail}; see {log_path}') from None
        finally:
            gc.collect()
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- many cells
def run_cells(cells, jobs=1, isolate=False, **cell_kwargs):
    """Run ``cells``; yields ``(cell, error)`` as each ends (error: None or one line).

    ``jobs == 1`` and not ``isolate``: in this process, in order. Otherwise in ``jobs``
    spawned worker processes with ``cpu_count // jobs`` threads each (a fresh one per cell
    when ``isolate``). The caller may stop iterating at the first error: cells not started
    are then cancelled.
    """
    if jobs == 1 and not isolate:
        for cell in cells:
            yield cell, _attempt(cell, cell_kwargs)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context('spawn'),
                               initializer=_init_worker, initargs=(threads,),
                               max_tasks_per_child=1 if isolate else None)
    try:
        pending = {pool.submit(_attempt, cell, cell_kwargs): cell for cell in cells}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _attempt(cell, cell_kwargs):
    """``run_cell``; the failure as one line (errors cross process boundaries as text).
    ``cell_kwargs['per_image_of']``: config -> whether its test keeps per-image statistics."""
    kwargs = dict(cell_kwargs)
    per_image = kwargs.pop('per_image_of', {}).get(cell.config, False)
    try:
        run_cell(cell, per_image=per_image, **kwargs)
    except (RuntimeError, FileNotFoundError) as e:
        return str(e)
    return None


def _init_worker(threads):
    """A worker's intra-op threads (its share of the machine's cores)."""
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- mmengine globals
@contextlib.contextmanager
def new_mmengine_instances_dropped():
    """On exit, forget the mmengine global instances created inside (``_drop_new_instances``):
    a logger made outside a cell would otherwise print the next cell's early log lines to the
    console instead of its sweep.log, and a default scope would outlive its user."""
    before = {cls: set(cls._instance_dict) for cls in _manager_classes()}
    try:
        yield
    finally:
        _drop_new_instances(before)


def _manager_classes():
    """mmengine's global-instance classes (Visualizer, MessageHub, MMLogger, DefaultScope, ...)."""
    from mmengine.utils import ManagerMixin
    classes, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    return classes


def _drop_new_instances(before):
    """Forget the global instances a run created (mmengine keeps them by name in
    ``_instance_dict``): mmseg's runtime names its visualizer 'visualizer', so the next run
    would get this one back, and write its scalars into this run's folder."""
    for cls in _manager_classes():
        for name in set(cls._instance_dict) - before.get(cls, set()):
            instance = cls._instance_dict.pop(name)
            for handler in list(getattr(instance, 'handlers', [])):  # MMLogger's log file
                if isinstance(handler, logging.FileHandler):
                    handler.close()
