"""Sweep cells: one config each, trained and tested through the normal tools.

A cell's work dir holds what mmengine writes (logs, ``vis_data/scalars.json``,
checkpoints) and, once its test finished, ``done.json``. A cell with
``done.json`` is skipped, so an interrupted sweep resumes where it stopped.

On one device without a launcher, ``tools/train.py`` and ``tools/test.py`` run
inside the sweep's process (their ``main`` functions, output to the cell's
``sweep.log``): the packages are imported once, and kernels compiled or autotuned
for one cell (Triton, cuDNN) serve the next. ``isolate=True``, several GPUs or a
launcher run each as its own process.
"""
import contextlib
import gc
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@dataclass(frozen=True)
class Cell:
    config: str
    work_dir: str

    @property
    def name(self):
        return osp.splitext(osp.basename(self.config))[0]

    @property
    def done_file(self):
        return osp.join(self.work_dir, 'done.json')

    def is_done(self):
        return osp.isfile(self.done_file)


def make_cells(configs, sweep_dir):
    missing = [c for c in configs if not osp.isfile(c)]
    if missing:
        raise FileNotFoundError(f'sweep: config not found: {", ".join(missing)}')
    names = [osp.splitext(osp.basename(c))[0] for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f'sweep: two configs share the name {dupes}; cells are keyed by file name')
    return [Cell(c, osp.join(sweep_dir, n)) for c, n in zip(configs, names)]


def _launch(script, args, gpus, launcher, log_path, isolate=False):
    """Run tools/<script> with ``args``: in this process, or as a subprocess (torchrun for
    several GPUs) when ``isolate``, ``gpus > 1`` or a launcher asks for one; output to log_path."""
    if not isolate and gpus == 1 and launcher == 'none':
        return _run_in_process(script, args, log_path)
    if gpus > 1:
        cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
               f'--master_port={29500 + os.getpid() % 1000}',
               osp.join(REPO, 'tools', script), *args, '--launcher', 'pytorch']
    else:
        cmd = [sys.executable, osp.join(REPO, 'tools', script), *args, '--launcher', launcher]
    with open(log_path, 'a') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f'{script} failed (exit {proc.returncode}); see {log_path}')


def _run_in_process(script, args, log_path):
    """``tools/<script>``'s main on ``args`` in this process, stdout and stderr to log_path."""
    from mmpatch.engine import cli
    main = dict(zip(('train.py', 'test.py'), (cli.train_main, cli.test_main)))[script]
    cwd = os.getcwd()
    with new_mmengine_instances_dropped(), open(log_path, 'a') as log:
        try:
            os.chdir(REPO)  # as the subprocess (relative config and data paths)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    main(args)
                except SystemExit as e:  # argparse
                    if e.code not in (0, None):
                        raise RuntimeError(f'{script} failed (exit {e.code}); see {log_path}')
                except Exception as e:  # one line as the tool prints it, else the traceback
                    failure = cli.known_failure(e)
                    if failure is None:
                        traceback.print_exc()
                    detail = failure[0] if failure else f'{type(e).__name__}: {e}'
                    print(f'{script}: error: {detail}', file=sys.stderr)
                    raise RuntimeError(f'{script} failed: {detail}; see {log_path}') from None
        finally:
            os.chdir(cwd)
            gc.collect()
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


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


def last_checkpoint(work_dir):
    """The checkpoint named by mmengine's ``last_checkpoint`` file."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'no last_checkpoint in {work_dir}: did training save one?')
    with open(marker) as f:
        return f.read().strip()


NO_TRAIN_VAL = 'train_cfg.val_begin=1000000000'  # validation never starts during training


def _cfg_options_args(options):
    return ['--cfg-options', *options] if options else []


def run_cell(cell, gpus=1, launcher='none', cfg_options=(), train_val=True, isolate=False):
    """Train (resuming a partial run) and test one cell; write done.json.

    ``train_val=False`` skips the config's validation during training: the cell is tested
    by tools/test.py afterwards either way. ``isolate``: train and test in subprocesses
    even on one device (see the module docstring).
    """
    os.makedirs(cell.work_dir, exist_ok=True)
    log_path = osp.join(cell.work_dir, 'sweep.log')
    train_options = [*cfg_options, *([] if train_val else [NO_TRAIN_VAL])]
    t0 = time.time()
    _launch('train.py', [cell.config, '--work-dir', cell.work_dir, '--resume',
                         *_cfg_options_args(train_options)], gpus, launcher, log_path, isolate)
    t_train = time.time() - t0
    ckpt = last_checkpoint(cell.work_dir)
    test_dir = osp.join(cell.work_dir, 'test')
    _launch('test.py', [cell.config, ckpt, '--work-dir', test_dir,
                        *_cfg_options_args(cfg_options)], gpus, launcher, log_path, isolate)
    with open(cell.done_file, 'w') as f:
        json.dump(dict(config=cell.config, checkpoint=ckpt, train_seconds=t_train,
                       test_seconds=time.time() - t0 - t_train), f, indent=1)
