"""Sweep cells: one (config, seed) each, trained and tested by mmpatch's train/test entry points.

A cell's work dir (``<sweep>/<config name>/seed<k>``) holds what mmengine writes (logs,
``vis_data/scalars.json`` with the validation curve, checkpoints), the test's metrics (and, for
segmentation, its per-image statistics) under ``test/``, and, once its test finished,
``done.json``. A cell with ``done.json`` is skipped, and a half-trained one resumes from its last
checkpoint, so an interrupted sweep goes on where it stopped.

The seed reaches the config as ``randomness.seed``: mmengine seeds the model's initialisation,
the sampler's shuffling and the transforms' random draws from it.

Where cells run (``run_cells``):
- one at a time in this process (the default on one device): the packages are imported
  once, and kernels compiled or autotuned for one cell (Triton, cuDNN) serve the next;
- ``jobs`` at a time in worker processes (``jobs > 1``), each worker with ``cpu_count // jobs``
  threads: on a CPU, two one-thread cells train faster together than two two-thread cells in
  turn;
- each in a fresh worker process (``isolate``);
- under torchrun (``gpus > 1``) or a launcher (``python -m mmpatch.apis.train ...``).

In this process and in the workers, a cell is two calls, ``mmpatch.apis.train.train`` then
``mmpatch.apis.test.test``; each run names its mmengine global instances after the cell
(``instance_names``), so the runs of one process keep their loggers and visualizers apart.
"""
import gc
import json
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


def instance_names(cell, phase):
    """``--cfg-options`` naming the mmengine global instances of one run of ``cell`` (``phase``:
    'train' or 'test') after it. mmengine keeps loggers, message hubs and visualizers by name for
    the life of the process and hands an existing one back for a known name: the runner names its
    own after ``experiment_name``, and mmseg's default runtime calls every visualizer
    'visualizer', so without these the cells run in one process would share one visualizer
    (the second cell's scalars written into the first cell's folder)."""
    name = f'{cell.name}_seed{cell.seed}_{phase}'
    return [f'experiment_name={name}', f'visualizer.name={name}']


def cell_runs(cell, cfg_options=(), iters_scale=None, train_val=True, per_image=False):
    """The keyword arguments of ``mmpatch.apis.train.train`` and ``mmpatch.apis.test.test`` for
    ``cell`` (the test's checkpoint is added once training ends); ``cfg_options``: the sweep's
    ``key=value`` strings, as the cells' options are kept too."""
    common = [*cfg_options, f'randomness.seed={cell.seed}']
    train = dict(config=cell.config, work_dir=cell.work_dir, resume='auto',
                 iters_scale=iters_scale if iters_scale not in (None, 1) else None,
                 cfg_options=[*common, *([] if train_val else [NO_TRAIN_VAL]),
                              *instance_names(cell, 'train')])
    test = dict(config=cell.config, work_dir=osp.join(cell.work_dir, 'test'),
                cfg_options=[*common, *instance_names(cell, 'test'),
                             *([f'test_evaluator.type={PER_IMAGE_METRIC}',
                                f'test_evaluator.per_image_file={per_image_file(cell)}']
                               if per_image else [])])
    return train, test


def command_line(kwargs, checkpoint=None):
    """``kwargs`` of ``cell_runs`` as the entry point's command line (torchrun and launchers)."""
    return [kwargs['config'], *([checkpoint] if checkpoint else []), '--work-dir', kwargs['work_dir'],
            *(['--resume'] if kwargs.get('resume') == 'auto' else []),
            *(['--iters-scale', str(kwargs['iters_scale'])] if kwargs.get('iters_scale') else []),
            '--cfg-options', *kwargs['cfg_options']]


def per_image_file(cell):
    return osp.join(cell.work_dir, 'test', 'per_image.npz')


def run_cell(cell, gpus=1, launcher='none', cfg_options=(), iters_scale=None, train_val=True,
             per_image=False):
    """Train (resuming a partial run) and test one cell; write done.json.

    ``train_val=False`` skips the config's validation during training (no convergence curve);
    the cell is tested afterwards either way. ``per_image``: the config's test evaluator is
    mmseg's ``IoUMetric`` (or ``PerImageIoUMetric``); the cell's test runs it as
    ``PerImageIoUMetric``, which gives the same metrics and saves each image's class areas for
    the bootstrap.
    In this process (one GPU, no launcher) the cell's log is mmengine's own, in its work dir
    (the console shows its warnings and errors); under torchrun or a launcher the processes'
    output goes to ``<cell>/sweep.log``.
    """
    from mmpatch.apis.test import test
    from mmpatch.apis.train import train
    from mmpatch.engine.atomic_checkpoint import last_checkpoint
    os.makedirs(cell.work_dir, exist_ok=True)
    train_kwargs, test_kwargs = cell_runs(cell, cfg_options, iters_scale, train_val, per_image)
    t0 = time.time()
    if gpus == 1 and launcher == 'none':
        ckpt = _in_process('train', train, train_kwargs)['checkpoint']
        if ckpt is None:
            raise RuntimeError(f'train saved no checkpoint in {cell.work_dir}')
        t_train = time.time() - t0
        _in_process('test', test, dict(test_kwargs, checkpoint=ckpt))
    else:
        log_path = osp.join(cell.work_dir, 'sweep.log')
        _launch('train', command_line(train_kwargs), gpus, launcher, log_path)
        ckpt = last_checkpoint(cell.work_dir)
        if ckpt is None:
            raise RuntimeError(f'train saved no checkpoint in {cell.work_dir}; see {log_path}')
        t_train = time.time() - t0
        _launch('test', command_line(test_kwargs, ckpt), gpus, launcher, log_path)
    with open(cell.done_file, 'w') as f:
        json.dump(dict(config=cell.config, seed=cell.seed, checkpoint=ckpt,
                       iters_scale=iters_scale or 1, train_seconds=t_train,
                       test_seconds=time.time() - t0 - t_train), f, indent=1)


def _in_process(command, entry, kwargs):
    """``entry(**kwargs)`` (``mmpatch.apis``' train or test), its console at warnings and errors;
    a failure becomes ``RuntimeError`` with one line (the tool's, or the exception's, whose
    traceback is printed: a bug)."""
    import torch

    from mmpatch.apis.errors import known_failure
    try:
        return entry(**kwargs, verbose=False, console=False)
    except Exception as e:
        failure = known_failure(e)
        if failure is None:
            traceback.print_exc()
        detail = failure[0] if failure else f'{type(e).__name__}: {e}'
        raise RuntimeError(f'{command} failed: {detail}') from None
    finally:
        gc.collect()  # the runner, its model and optimizer are unreachable now: free them
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _launch(command, args, gpus, launcher, log_path):
    """``python -m mmpatch.apis.<command> ARGS`` under torchrun (``gpus > 1``) or a launcher,
    its output appended to ``log_path``."""
    module = f'mmpatch.apis.{command}'
    if gpus > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
               f'--master_port={29500 + os.getpid() % 1000}',
               '-m', module, *args, '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, '-m', module, *args, '--launcher', launcher]
    with open(log_path, 'a') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{command} failed (exit {proc.returncode}); see {log_path}')


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
