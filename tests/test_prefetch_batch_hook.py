"""PrefetchBatchHook: the next batch is prepared before the losses are read, nothing else moves."""
import copy

import pytest
import torch
from mmengine.hooks import RuntimeInfoHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmseg.models.data_preprocessor import SegDataPreProcessor
from torch.utils.data import Dataset

import mmpatch.fast  # noqa: F401  (registers the hook and stack_seg_collate)
from mmpatch.fast.prefetch_batch_hook import Lookahead
from mmpatch.fast import StackedSegDataPreProcessor

from test_stacked_seg_batches import NORM, make_batch


class Items(Dataset):
    """Stacked-batch items, each knowing its index; counts the items taken."""

    def __init__(self, n=12):
        self.items = make_batch([(8, 8)] * n)
        for i, item in enumerate(self.items):
            item['data_samples'].set_metainfo(dict(index=i))
        self.taken = 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.taken += 1
        return copy.deepcopy(self.items[i])


class TinySeg(BaseModel):
    def __init__(self, preprocessor):
        super().__init__(data_preprocessor=preprocessor)
        self.w = torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.seen.append([s.index for s in data_samples])
        labels = torch.stack([s.gt_sem_seg.data for s in data_samples]).float()
        return dict(loss=self.w * inputs.mean() + labels.mean() * 1e-3)


def train(tmp_path, hooks, preprocessor=None, loop=None, iters=4):
    dataset = Items()
    model = TinySeg(preprocessor or StackedSegDataPreProcessor(size=(8, 8), **NORM))
    runner = Runner(
        model=model, work_dir=str(tmp_path), default_scope='mmengine',
        train_dataloader=dict(dataset=dataset, sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=2, collate_fn=dict(type='stack_seg_collate')),
        train_cfg=loop or dict(type='IterBasedTrainLoop', max_iters=iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)), custom_hooks=hooks,
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=100)),
        randomness=dict(seed=0))
    runner.train()
    return model, dataset, runner


def test_same_batches_and_updates_with_the_next_one_prepared_before_the_read(tmp_path,
                                                                            monkeypatch):
    plain, plain_data, _ = train(tmp_path / 'plain', hooks=[])
    events = []
    real_prefetch, real_read = StackedSegDataPreProcessor.prefetch, RuntimeInfoHook.after_train_iter
    monkeypatch.setattr(StackedSegDataPreProcessor, 'prefetch', lambda self, data: (
        events.append(('prefetch', data['data_samples'][0].index)) or real_prefetch(self, data)))
    monkeypatch.setattr(RuntimeInfoHook, 'after_train_iter', lambda self, runner, **kw: (
        events.append(('read', runner.iter)) or real_read(self, runner, **kw)))
    from mmpatch.fast import stacked_seg_data_preprocessor as module
    computed, real_shapes = [], module._image_shapes
    monkeypatch.setattr(module, '_image_shapes',
                        lambda data: computed.append(1) or real_shapes(data))
    ahead, ahead_data, runner = train(tmp_path / 'ahead', hooks=[dict(type='PrefetchBatchHook')])
    assert ahead.seen == plain.seen and len(ahead.seen) == 4  # same batches, same order
    assert torch.equal(ahead.w, plain.w)  # same updates
    assert len(computed) == 4  # each batch preprocessed once
    firsts = [batch[0] for batch in ahead.seen]
    assert events == [('prefetch', firsts[1]), ('read', 0), ('prefetch', firsts[2]), ('read', 1),
                      ('prefetch', firsts[3]), ('read', 2), ('read', 3)]
    assert ahead_data.taken == plain_data.taken  # no batch taken after the last iteration
    assert isinstance(runner.train_loop.dataloader_iterator, Lookahead)
    waits = runner.message_hub.get_scalar('train/prefetch_data_time')  # the loader's wait
    assert len(waits.data[0]) == 3 and all(w >= 0 for w in waits.data[0])
    # in the training log, next to data_time (mmengine may reuse the first run's log file when
    # both runners start within one second: read every log; only this run has the hook)
    logs = ''.join(path.read_text() for path in tmp_path.rglob('*.log'))
    assert 'prefetch_data_time: ' in logs


def test_needs_an_iteration_loop_and_a_preprocessor_that_prefetches(tmp_path):
    hook = [dict(type='PrefetchBatchHook')]
    with pytest.raises(TypeError, match='iteration-based train loop.*EpochBasedTrainLoop'):
        train(tmp_path / 'epochs', hook, loop=dict(type='EpochBasedTrainLoop', max_epochs=1))
    with pytest.raises(TypeError, match='prefetch.*got SegDataPreProcessor'):
        train(tmp_path / 'mmseg', hook, preprocessor=SegDataPreProcessor(size=(8, 8), **NORM))


def test_prefetched_result_only_for_that_batch_in_training():
    pre = StackedSegDataPreProcessor(size=(8, 8), **NORM)
    from mmpatch.fast import stack_seg_collate
    batch, other = (stack_seg_collate(make_batch([(8, 8)] * 2, seed=s)) for s in (0, 1))
    pre.prefetch(batch)
    prepared = pre._prefetched[1]
    assert pre(other, True)['inputs'] is not prepared['inputs']  # another batch: computed
    assert pre(copy.deepcopy(batch), False)['inputs'] is not prepared['inputs']  # inference
    assert pre(batch, True) is prepared  # the batch itself: handed back, once
    again = pre(batch, True)
    assert again is not prepared and torch.equal(again['inputs'], prepared['inputs'])


def test_lookahead_yields_the_peeked_item_next():
    it = Lookahead(iter(range(3)))
    assert it.peek() == 0 and it.peek() == 0 and next(it) == 0
    assert list(it) == [1, 2]
    with pytest.raises(StopIteration):
        it.peek()
