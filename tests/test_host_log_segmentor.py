"""HostLogEncoderDecoder: mmseg's training step, with the log values handed back on the host."""
import copy

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmpatch  # noqa: F401
import mmpatch.fast.host_log_encoder_decoder as host_log
from mmpatch.fast import HostLogEncoderDecoder, host_log_vars

from test_stacked_seg_batches import NORM, make_batch


def segmentor(kind):
    from mmseg.registry import MODELS
    return MODELS.build(dict(
        type=kind,
        data_preprocessor=dict(type='StackedSegDataPreProcessor', size=(16, 16), **NORM),
        backbone=dict(type='PatchViT', arch=dict(embed_dims=16, num_layers=1, num_heads=2),
                      patch_size=4, img_size=16),
        decode_head=dict(type='LinearHead', in_channels=16, num_classes=5,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode='whole')))


def test_same_step_and_log_values_as_encoder_decoder():
    from mmpatch.fast import stack_seg_collate
    init_default_scope('mmseg')
    batch = stack_seg_collate(make_batch([(16, 16)] * 2, max_label=5))
    runs = []
    for kind in ('EncoderDecoder', 'HostLogEncoderDecoder'):
        torch.manual_seed(0)
        model = segmentor(kind)
        optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
        log_vars = model.train_step(copy.deepcopy(batch), optim_wrapper)
        runs.append((log_vars, [p.detach().clone() for p in model.parameters()]))
    (plain_log, plain_params), (host_log, host_params) = runs
    assert isinstance(model, HostLogEncoderDecoder)
    assert list(host_log) == list(plain_log) == ['loss', 'decode.loss_ce', 'decode.acc_seg']
    for key in plain_log:
        assert host_log[key].device.type == 'cpu' and not host_log[key].requires_grad
        torch.testing.assert_close(host_log[key], plain_log[key].detach().cpu())
    for a, b in zip(plain_params, host_params, strict=True):
        torch.testing.assert_close(a, b)


def test_host_log_vars_copies_to_the_host_detached():
    x = torch.ones(2, requires_grad=True)
    out = host_log_vars(dict(loss=(x * 3).sum(), acc=torch.tensor([50.0])))
    assert out['loss'].item() == 6 and not out['loss'].requires_grad
    assert out['acc'].item() == 50


def test_train_step_waits_for_the_log_copies_after_issuing_the_update(monkeypatch):
    from mmpatch.fast import stack_seg_collate
    init_default_scope('mmseg')
    events = []
    real_copy = host_log.copy_log_vars

    def copy_log_vars(log_vars):
        events.append('copy')
        on_host, wait = real_copy(log_vars)
        return on_host, lambda: events.append('wait') or wait()
    monkeypatch.setattr(host_log, 'copy_log_vars', copy_log_vars)
    model = segmentor('HostLogEncoderDecoder')
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
    real_update = optim_wrapper.update_params
    monkeypatch.setattr(optim_wrapper, 'update_params',
                        lambda loss: events.append('update') or real_update(loss))
    batch = stack_seg_collate(make_batch([(16, 16)] * 2, max_label=5))
    log_vars = model.train_step(batch, optim_wrapper)
    assert events == ['copy', 'update', 'wait']
    assert all(v.device.type == 'cpu' for v in log_vars.values())


def test_parse_losses_for_model_wrappers_returns_host_values():
    # MMDistributedDataParallel.train_step calls module.parse_losses, then update_params
    init_default_scope('mmseg')
    model = segmentor('HostLogEncoderDecoder')
    x = torch.ones(2, requires_grad=True)
    loss, log_vars = model.parse_losses(dict(loss_ce=(x * 2).sum(), acc_seg=torch.tensor([7.0])))
    assert loss.requires_grad and loss.item() == 4
    assert {k: v.item() for k, v in log_vars.items()} == {'loss': 4, 'loss_ce': 4, 'acc_seg': 7}
    assert not any(v.requires_grad for v in log_vars.values())
