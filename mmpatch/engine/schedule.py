"""Stretch or shorten a config's training schedule as one unit.

``tools/train.py --iters-scale F`` and ``--max-iters N`` (and the sweep's ``--iters-scale``)
call :func:`scale_schedule`: the loop's length, the validation and checkpoint intervals and
every parameter scheduler's ``begin`` / ``end`` / ``milestones`` in the loop's unit move
together, so a doubled (or a 20-iteration) run keeps the schedule's shape: warm-up then decay
to the same end point. Each change is returned as a line, which the CLI prints.
"""
import math

_LOOP_UNITS = {'IterBasedTrainLoop': 'max_iters', 'EpochBasedTrainLoop': 'max_epochs'}
MIN_SPAN = 2  # steps a scaled scheduler keeps at least (if it had as many)


def _span(sched):
    """``end - begin`` of a param scheduler, or None without a finite end."""
    end = sched.get('end')
    if end is None or (isinstance(end, float) and math.isinf(end)):
        return None
    return end - sched.get('begin', 0)


def scaled(value, factor, minimum=1):
    """``value * factor`` rounded, at least ``minimum``; ``None``, ``inf`` and values <= 0
    (e.g. a checkpoint interval of -1: off) pass unchanged."""
    if value is None or value <= 0 or (isinstance(value, float) and math.isinf(value)):
        return value
    return max(minimum, int(round(value * factor)))


def _loop_length_key(train_cfg):
    """'max_iters' or 'max_epochs': the unit the training loop counts in."""
    for key in ('max_iters', 'max_epochs'):
        if key in train_cfg:
            return key
    loop = train_cfg.get('type')
    raise ValueError(f'train_cfg ({loop or "no type"}) has neither max_iters nor max_epochs: '
                     'its schedule cannot be scaled')


def scale_schedule(cfg, factor):
    """Multiply ``cfg``'s schedule by ``factor`` in place; returns the changes as text lines.

    Changed: ``train_cfg.max_iters`` (or ``max_epochs``), ``train_cfg.val_interval`` and
    ``val_begin``, ``default_hooks.checkpoint.interval``, and ``begin`` / ``end`` /
    ``milestones`` of the param schedulers that count in the loop's unit (``by_epoch``
    matching the loop). Iteration-counted warm-ups inside an epoch loop stay as they are.
    """
    if not factor > 0:
        raise ValueError(f'the schedule scale must be > 0, got {factor}')
    changes = []

    def move(owner, key, label, minimum=1):
        if owner is None or owner.get(key) is None:
            return
        old = owner[key]
        new = [scaled(v, factor, minimum) for v in old] if isinstance(old, (list, tuple)) \
            else scaled(old, factor, minimum)
        if new != old:
            owner[key] = new
            changes.append(f'{label}: {old} -> {new}')

    length_key = _loop_length_key(cfg.train_cfg)
    by_epoch = length_key == 'max_epochs'
    move(cfg.train_cfg, length_key, f'train_cfg.{length_key}')
    move(cfg.train_cfg, 'val_interval', 'train_cfg.val_interval')
    move(cfg.train_cfg, 'val_begin', 'train_cfg.val_begin', minimum=0)
    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    move(checkpoint, 'interval', 'default_hooks.checkpoint.interval')
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, sched in enumerate(schedulers):
        if bool(sched.get('by_epoch', True)) != by_epoch:
            continue
        name = f'param_scheduler[{i}] ({sched.get("type")})'
        old_span = _span(sched)
        move(sched, 'begin', f'{name}.begin', minimum=0)
        move(sched, 'end', f'{name}.end')
        if old_span is not None and _span(sched) < min(old_span, MIN_SPAN):
            # mmengine's schedulers need two steps to go from their start value to their end
            # one: a one-step warm-up would leave the lr at start_factor for the whole run
            sched['end'] = sched.get('begin', 0) + min(old_span, MIN_SPAN)
            changes.append(f'{name}.end: kept {MIN_SPAN} after begin (a shorter span would '
                           f'never reach its end value)')
        move(sched, 'milestones', f'{name}.milestones')
    return changes


def set_train_length(cfg, length):
    """Scale ``cfg``'s schedule so that the loop runs exactly ``length`` iterations (epochs for
    an epoch-based loop); returns the changes as :func:`scale_schedule` does."""
    if int(length) != length or length < 1:
        raise ValueError(f'the training length must be a whole number >= 1, got {length}')
    key = _loop_length_key(cfg.train_cfg)
    changes = scale_schedule(cfg, length / cfg.train_cfg[key])
    cfg.train_cfg[key] = int(length)  # exact, whatever the rounding of the ratio
    return changes
