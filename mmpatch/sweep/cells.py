"""Sweep cells: one config each, trained and tested through the normal tools.

A cell's work dir holds what mmengine writes (logs, ``vis_data/scalars.json``,
checkpoints) and, once its test finished, ``done.json``. A cell with
``done.json`` is skipped, so an interrupted sweep resumes where it stopped.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time
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


def _launch(script, args, gpus, launcher, log_path):
    """Run tools/<script> as a subprocess (torchrun for several GPUs); output to log_path."""
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


def run_cell(cell, gpus=1, launcher='none', cfg_options=(), train_val=True):
    """Train (resuming a partial run) and test one cell; write done.json.

    ``train_val=False`` skips the config's validation during training: the cell is tested
    by tools/test.py afterwards either way.
    """
    os.makedirs(cell.work_dir, exist_ok=True)
    log_path = osp.join(cell.work_dir, 'sweep.log')
    train_options = [*cfg_options, *([] if train_val else [NO_TRAIN_VAL])]
    t0 = time.time()
    _launch('train.py', [cell.config, '--work-dir', cell.work_dir, '--resume',
                         *_cfg_options_args(train_options)], gpus, launcher, log_path)
    t_train = time.time() - t0
    ckpt = last_checkpoint(cell.work_dir)
    test_dir = osp.join(cell.work_dir, 'test')
    _launch('test.py', [cell.config, ckpt, '--work-dir', test_dir,
                        *_cfg_options_args(cfg_options)], gpus, launcher, log_path)
    with open(cell.done_file, 'w') as f:
        json.dump(dict(config=cell.config, checkpoint=ckpt, train_seconds=t_train,
                       test_seconds=time.time() - t0 - t_train), f, indent=1)
