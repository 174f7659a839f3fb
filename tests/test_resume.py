"""Resuming mmengine training under torch's weights-only loading (default since torch 2.6)."""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmpatch  # noqa: F401  (registers the allow-list)
from mmpatch.engine.safe_globals import HistoryBuffer


class TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x, y, mode='loss'):
        out = self.fc(x)
        if mode == 'loss':
            return dict(loss=((out - y) ** 2).mean())
        return out


class TinyData(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(4, generator=g), y=torch.randn(1, generator=g))


class StateProbe(Hook):
    """Records the optimizer state when training starts and the iterations it runs."""

    def __init__(self):
        self.state_at_start, self.iters = None, []

    def before_train(self, runner):
        state = runner.optim_wrapper.optimizer.state_dict()['state']
        self.state_at_start = {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()}
                               for k, s in state.items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iters.append(runner.iter + 1)  # runner.iter counts up after this hook


def make_runner(work_dir, max_iters, name, resume=False):
    probe = StateProbe()
    runner = Runner(
        model=TinyModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=TinyData(), sampler=dict(type='InfiniteSampler', shuffle=True),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=8),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[probe], resume=resume, default_scope='mmengine', randomness=dict(seed=0))
    return runner, probe


def test_resume_continues_iterations_and_optimizer_state(tmp_path):
    first, _ = make_runner(tmp_path, 4, 'first')
    first.train()
    saved = first.optim_wrapper.optimizer.state_dict()['state']
    ckpt = osp.join(tmp_path, 'iter_4.pth')
    # the real checkpoint loads weights-only, and needs nothing beyond mmpatch's allow-list
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
    allowed = {f'{g.__module__}.{g.__qualname__}' if not isinstance(g, tuple) else g[1]
               for g in torch.serialization.get_safe_globals()}
    assert unsafe <= allowed, unsafe - allowed
    loaded = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert isinstance(next(iter(loaded['message_hub']['log_scalars'].values())), HistoryBuffer)

    second, probe = make_runner(tmp_path, 6, 'second', resume=True)
    second.train()
    assert probe.iters == [5, 6], 'training must continue at iteration 5'
    for k, s in saved.items():
        assert float(probe.state_at_start[k]['step']) == 4
        assert torch.equal(probe.state_at_start[k]['exp_avg'], s['exp_avg'])
        assert torch.equal(probe.state_at_start[k]['exp_avg_sq'], s['exp_avg_sq'])
    assert float(second.optim_wrapper.optimizer.state_dict()['state'][0]['step']) == 6
    assert second.message_hub.get_scalar('train/loss').data[0].size == 6  # logged history carried over


class Payload:
    """Unpickling this would create a folder: proof of code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


class AttrProbe:
    """Pickles as getattr(numpy.ndarray, 'tofile'): a free getattr would reach a file writer."""

    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


def test_unsafe_objects_are_still_refused(tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {}, 'x': Payload(str(marker))}, bad)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(bad, weights_only=True)
    assert not marker.exists()

    torch.save({'x': AttrProbe()}, bad)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(bad, weights_only=True)
    assert torch.load(bad, weights_only=False)['x'] is np.ndarray.tofile  # (it is a real getattr pickle)
