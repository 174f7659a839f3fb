"""What the train entry point's options change in the config: the schedule length, AMP, the
auto-scaled LR, resuming; and the one line that explains a CUDA out-of-memory error.

Setters that have something to say return notes, ``(logging level, line)`` pairs that the
entry point writes to the run's log once the runner (and so its logger) exists: a line logged
before that would go to whichever logger was made last in the process.
"""
import logging
import os.path as osp

import torch

from mmpatch.engine.atomic_checkpoint import latest_complete_checkpoint
from mmpatch.engine.schedule import scale_schedule, set_train_length
from mmpatch.utils.paths import is_remote

from .errors import CliError


def set_schedule_length(cfg, max_iters=None, iters_scale=None):
    """``--max-iters`` / ``--iters-scale``: the whole schedule moves (mmpatch/engine/schedule.py);
    each change is a note, and mmengine saves the resulting config in the work dir."""
    if max_iters is None and iters_scale is None:
        return []
    try:
        changes = (set_train_length(cfg, max_iters) if max_iters is not None
                   else scale_schedule(cfg, iters_scale))
    except ValueError as e:
        flag = '--max-iters' if max_iters is not None else '--iters-scale'
        raise CliError(f'{flag}: {e}') from None
    return [(logging.INFO, f'schedule: {line}') for line in changes]


def enable_amp(cfg):
    """``--amp``: AmpOptimWrapper with dynamic loss scaling, for a config with a plain OptimWrapper."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        return [(logging.WARNING, 'AMP training is already enabled in the config.')]
    if wrapper != 'OptimWrapper':
        raise CliError(f'--amp needs optim_wrapper.type OptimWrapper, the config has {wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    return []


def enable_auto_scale_lr(cfg):
    """``--auto-scale-lr``: mmengine scales the LR by total batch size / base_batch_size."""
    auto = cfg.get('auto_scale_lr')
    if not auto or 'base_batch_size' not in auto:
        raise CliError('--auto-scale-lr needs auto_scale_lr = dict(enable=False, base_batch_size=N) '
                       'in the config')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg, resume):
    """Resume from ``resume``, or ('auto') from the newest complete checkpoint in the work dir.

    mmengine's own 'auto' trusts ``last_checkpoint`` blindly; here a file it
    names that is missing or truncated is skipped for the newest complete one.
    """
    if resume is None:
        return []
    cfg.resume = True
    if resume == 'auto':
        latest = latest_complete_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if latest is None:  # a fresh start (from the config's load_from, if it has one)
            cfg.resume = False
            return [(logging.INFO, f'--resume: no complete checkpoint in {cfg.work_dir}; '
                     'training from the start')]
        cfg.load_from = latest
        return []
    if not is_remote(resume) and not osp.isfile(resume):
        raise CliError(f'--resume: checkpoint not found: {resume}')
    cfg.load_from = resume
    return []


def _oom_site(err):
    """The model part (class) that ran out of memory: the first module below the top model."""
    modules = []
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get('self')
        if isinstance(owner, torch.nn.Module) and type(owner).__name__ not in modules:
            modules.append(type(owner).__name__)
        tb = tb.tb_next
    return modules[1] if len(modules) > 1 else (modules[0] if modules else None)


def out_of_memory_message(cfg, err):
    """One line: where memory ran out and the config changes that need less of it."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or (model.get('module') or {}).get('backbone') or {}
    fixes = []
    if backbone.get('with_cp') is False:
        fixes.append('activation checkpointing (--cfg-options model.backbone.with_cp=True)')
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    if batch and batch > 1:
        fixes.append(f'a smaller batch (train_dataloader.batch_size={batch // 2}, now {batch}; more GPUs '
                     'keep the total)')
    if (cfg.get('optim_wrapper') or {}).get('type') != 'AmpOptimWrapper':
        fixes.append('bf16 autocast (--amp --cfg-options optim_wrapper.dtype=bfloat16)')
    if not fixes:
        fixes.append('more GPUs with a smaller per-GPU batch, or FSDP (docs/robustness.md)')
    site = _oom_site(err)
    detail = str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'
    return (f'CUDA out of memory while training{f" in {site}" if site else ""} ({detail[:200]}); '
            f'fix: {"; or ".join(fixes)}')

