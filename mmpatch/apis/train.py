"""Train a segmentor (``default_scope='mmseg'``) or a detector (``'mmdet'``) from a config.

``train(config, ...)`` is the function (the sweep calls it per cell); ``main`` its command line,
as ``tools/train.py`` and ``python -m mmpatch.apis.train`` (under torchrun: the sweep's
multi-GPU cells) run it. Before the Runner is built the config, its options, the patch sizes,
the data paths and the work dir are checked; after, the classes and (resuming) the checkpoint.
A failure of those, or out of memory while training, is one line (``mmpatch/apis/errors.py``).
Atomic checkpoints and the stop at a non-finite loss are the config's own hooks
(``AtomicCheckpointHook``, ``FiniteLossHook`` in ``configs/_base_/schedules``).
"""
import argparse

import torch

from mmpatch.engine.atomic_checkpoint import last_checkpoint

from .args import add_common_args, parse
from .checks import (check_checkpoint_fits, check_data_paths, check_no_overwrite, check_num_classes,
                     check_patch_sizes, read_checkpoint)
from .config import load_config, set_work_dir
from .errors import TrainingFailure, run
from .runner import build_runner, quiet_warnings
from .train_options import (enable_amp, enable_auto_scale_lr, out_of_memory_message, set_resume,
                            set_schedule_length)


def train(config, work_dir=None, cfg_options=None, resume=None, amp=False, auto_scale_lr=False,
          max_iters=None, iters_scale=None, launcher='none', verbose=True, console=True):
    """Train ``config`` (a path, or an mmengine ``Config``, which is copied); the other
    arguments are ``tools/train.py``'s options.

    Args:
        cfg_options: a dict, or ``key=value`` strings as ``--cfg-options`` takes them.
        resume: None (a fresh start; refused when ``work_dir`` holds checkpoints), 'auto' (the
            newest complete checkpoint in ``work_dir``, a fresh start when there is none) or a path.
        verbose: mmengine's environment, config and hook dumps on the console too.
        console: False shows only warnings and errors on the console (the log file keeps all).

    Returns:
        dict: ``work_dir`` and ``checkpoint`` (the last one saved, as ``last_checkpoint`` names it).
    """
    with quiet_warnings(verbose):
        cfg = load_config(config, cfg_options, launcher,
                          type_overrides={'optim_wrapper': 'AmpOptimWrapper'} if amp else None)
        scope = cfg.default_scope
        set_work_dir(cfg, work_dir, config)
        check_no_overwrite(cfg.work_dir, resume)
        notes = enable_amp(cfg) if amp else []
        if auto_scale_lr:
            enable_auto_scale_lr(cfg)
        notes += set_schedule_length(cfg, max_iters, iters_scale)
        notes += set_resume(cfg, resume)
        resume_state = read_checkpoint(cfg.load_from, '--resume', resume=True) if cfg.get('resume') else None
        check_patch_sizes(cfg, scope)
        loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
        check_data_paths(cfg, loaders, ['val_evaluator'] if cfg.get('val_cfg') else [], scope)
        runner = build_runner(cfg, scope, verbose, console)
        for level, line in notes:
            runner.logger.log(level, line)
        check_num_classes(runner, 'train_loop')
        if cfg.get('resume'):
            check_checkpoint_fits(runner, cfg.load_from, resume_state)
        try:
            runner.train()
        except torch.cuda.OutOfMemoryError as err:
            raise TrainingFailure(out_of_memory_message(cfg, err)) from err
    return dict(work_dir=runner.work_dir, checkpoint=last_checkpoint(runner.work_dir))


def parser():
    p = argparse.ArgumentParser(prog='train.py', description='Train a segmentor or detector '
                                "(the config's default_scope: mmseg or mmdet)")
    p.add_argument('config', help='train config file path')
    p.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                   help='resume training: alone, from the latest checkpoint in the work dir '
                   '(a fresh start when there is none); with a path, from that checkpoint')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the LR by total batch size / auto_scale_lr.base_batch_size')
    length = p.add_mutually_exclusive_group()
    length.add_argument('--max-iters', type=int, metavar='N',
                        help='train N iterations (epochs for an epoch-based config): the '
                        'scheduler ends, validation and checkpoint intervals move with it')
    length.add_argument('--iters-scale', type=float, metavar='F',
                        help='multiply the schedule by F (2: twice as long), as --max-iters does')
    add_common_args(p)
    return p


def main(argv=None):
    """``train`` on the command line ``argv`` (``sys.argv[1:]`` by default); errors propagate
    (``errors.run`` turns the known ones into one line)."""
    args = parse(parser(), argv)
    train(args.config, work_dir=args.work_dir, cfg_options=args.cfg_options, resume=args.resume,
          amp=args.amp, auto_scale_lr=args.auto_scale_lr, max_iters=args.max_iters,
          iters_scale=args.iters_scale, launcher=args.launcher, verbose=args.verbose)


if __name__ == '__main__':
    run(main, 'train.py')
