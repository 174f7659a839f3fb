"""Stop training at the first NaN / inf loss, naming the iteration and the last good checkpoint.

mmengine keeps training on a NaN loss (every later step is NaN too, and the
next checkpoint saves NaN weights). ``FiniteLossHook`` checks the logged losses
after every iteration, before the checkpoint hook runs, and raises
``NonFiniteLossError``. The configs declare it
(``default_hooks.finite_loss = dict(type='FiniteLossHook')`` in the
``configs/_base_/schedules`` files); ``tools/train.py`` reports the error as one line.
"""
import math

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .atomic_checkpoint import last_checkpoint


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _value(x):
    return float(x.detach().float().mean()) if torch.is_tensor(x) else float(x)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise ``NonFiniteLossError`` when a loss logged by ``train_step`` is not finite.

    Args:
        interval (int): check every ``interval`` iterations (the logger reads
            the losses every iteration anyway, so 1 costs nothing extra).
    """

    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW): NaN weights are never saved

    def __init__(self, interval=1):
        self.interval = interval

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        losses = {k: _value(v) for k, v in outputs.items() if 'loss' in k}
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if not bad:
            return
        ckpt = last_checkpoint(runner.work_dir)
        resume = (f'resume from it with --resume {ckpt}' if ckpt else
                  'no checkpoint was saved yet (start again)')
        terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        raise NonFiniteLossError(
            f'loss is not finite at iteration {runner.iter + 1} ({terms}); training stopped. '
            f'Last good checkpoint: {ckpt or "none"}. Fix: lower optim_wrapper.optimizer.lr, add '
            f'optim_wrapper.clip_grad=dict(max_norm=1.0), check the data and labels, then {resume}')
