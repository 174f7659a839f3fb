"""scale_schedule / set_train_length: the schedule moves as one unit (tools/train.py
--iters-scale / --max-iters, the sweep's --iters-scale)."""
import pytest
from mmengine.config import Config

from mmpatch.engine.schedule import scale_schedule, set_train_length


def iter_cfg():
    return Config(dict(
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=400, val_interval=100),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=400)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
            dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=20, end=400)]))


def epoch_cfg():
    return Config(dict(
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=-1)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[8, 11])]))


def test_doubling_an_iteration_schedule_moves_everything():
    cfg = iter_cfg()
    changes = scale_schedule(cfg, 2)
    assert cfg.train_cfg.max_iters == 800 and cfg.train_cfg.val_interval == 200
    assert cfg.default_hooks.checkpoint.interval == 800
    warm, poly = cfg.param_scheduler
    assert (warm.begin, warm.end, poly.begin, poly.end) == (0, 40, 40, 800)
    assert 'train_cfg.max_iters: 400 -> 800' in changes
    assert len(changes) == 6  # max_iters, val_interval, checkpoint, warm-up end, poly begin/end


def test_a_short_run_keeps_a_valid_schedule():
    cfg = iter_cfg()
    set_train_length(cfg, 20)
    assert cfg.train_cfg.max_iters == 20 and cfg.train_cfg.val_interval == 5
    warm, poly = cfg.param_scheduler
    assert (warm.begin, warm.end) == (0, 2)  # 20 x 0.05 = 1 step: kept at 2 (see below)
    assert 0 <= poly.begin < poly.end == 20
    cfg = iter_cfg()
    set_train_length(cfg, 1)  # every end still after its begin
    assert all(s.begin < s.end for s in cfg.param_scheduler)


def test_a_shrunk_warmup_still_reaches_the_base_lr():
    """A warm-up scaled to one step would hold the lr at start_factor for the whole run."""
    import torch
    from mmengine.optim.scheduler import LinearLR, PolyLR
    cfg = iter_cfg()
    changes = scale_schedule(cfg, 0.02)  # warm-up 20 -> 0.4 steps
    assert any('kept 2 after begin' in c for c in changes), changes
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    kinds = dict(LinearLR=LinearLR, PolyLR=PolyLR)
    schedulers = [kinds[s['type']](optimizer, **{k: v for k, v in s.items() if k != 'type'})
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(cfg.train_cfg.max_iters):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    assert max(lrs) > 0.5e-3, lrs


def test_exact_length_whatever_the_rounding():
    cfg = iter_cfg()
    set_train_length(cfg, 333)
    assert cfg.train_cfg.max_iters == 333


def test_epoch_schedule_scales_epochs_and_keeps_iteration_warmup():
    cfg = epoch_cfg()
    scale_schedule(cfg, 2)
    warm, step = cfg.param_scheduler
    assert cfg.train_cfg.max_epochs == 24
    assert (step.end, step.milestones) == (24, [16, 22])
    assert warm.end == 500  # counted in iterations: not part of the epoch schedule
    assert cfg.default_hooks.checkpoint.interval == -1  # off stays off


@pytest.mark.parametrize('bad', [0, -1.5])
def test_bad_factor_is_refused(bad):
    with pytest.raises(ValueError, match='> 0'):
        scale_schedule(iter_cfg(), bad)


def test_bad_length_is_refused():
    with pytest.raises(ValueError, match='whole number'):
        set_train_length(iter_cfg(), 0)


def test_loop_without_length_is_named():
    cfg = Config(dict(train_cfg=dict(type='MyLoop')))
    with pytest.raises(ValueError, match='MyLoop'):
        scale_schedule(cfg, 2)


def test_toy_config_scales(tmp_path):
    cfg = Config.fromfile('configs/toy/vit_t_p8_linear.py')
    n = cfg.train_cfg.max_iters
    scale_schedule(cfg, 2)
    assert cfg.train_cfg.max_iters == 2 * n
    assert cfg.param_scheduler[-1].end == 2 * n
