"""stack_seg_collate + StackedSegDataPreProcessor give what pseudo_collate + mmseg's
SegDataPreProcessor give, with two tensors per batch instead of two per sample."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS, init_default_scope
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.structures import SegDataSample

from mmpatch.fast import stack_seg_collate
from mmpatch.fast import StackedSegDataPreProcessor

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
            pad_val=0, seg_pad_val=255)


def make_batch(shapes, max_label=150, seed=0):
    """PackSegInputs-style items: uint8 CHW images, int64 (1, H, W) label maps with 255s."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for h, w in shapes:
        label = torch.randint(0, max_label + 1, (1, h, w), generator=g)
        label[label == max_label] = 255 if max_label < 255 else max_label
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        items.append(dict(inputs=torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                          data_samples=sample))
    return items


def run_both(items, training, **cfg):
    """(mmseg's output on pseudo_collate, ours on stack_seg_collate)."""
    mmseg = SegDataPreProcessor(**NORM, **cfg)(pseudo_collate(copy.deepcopy(items)), training)
    ours = StackedSegDataPreProcessor(**NORM, **cfg)(stack_seg_collate(copy.deepcopy(items)),
                                                     training)
    return mmseg, ours


def assert_same(mmseg, ours):
    assert torch.equal(mmseg['inputs'], ours['inputs'])
    for a, b in zip(mmseg['data_samples'], ours['data_samples'], strict=True):
        assert a.metainfo.keys() == b.metainfo.keys()
        for key in a.metainfo:
            assert tuple(a.metainfo[key]) == tuple(b.metainfo[key]), key
        assert ('gt_sem_seg' in a) == ('gt_sem_seg' in b)
        if 'gt_sem_seg' in a:
            assert a.gt_sem_seg.data.dtype == b.gt_sem_seg.data.dtype
            assert torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data)


@pytest.mark.parametrize('cfg', [dict(size=(24, 32)), dict(size=(20, 20)),
                                 dict(size_divisor=16), dict(size_divisor=1)])
def test_training_batch_same_as_mmseg(cfg):
    mmseg, ours = run_both(make_batch([(20, 20)] * 3), training=True, **cfg)
    assert_same(mmseg, ours)
    assert ours['data_samples'][0].gt_sem_seg.data.dtype == torch.int64


def test_each_batch_is_cast_once_without_blocking(monkeypatch):
    moved = []
    real_to = SegDataSample.to
    monkeypatch.setattr(SegDataSample, 'to', lambda self, *a, **k: moved.append(k) or
                        real_to(self, *a, **k))
    for training in (True, False):  # the fast path and mmseg's
        StackedSegDataPreProcessor(**NORM, size=(20, 20))(
            stack_seg_collate(make_batch([(20, 20)] * 3)), training)
    assert moved == [dict(non_blocking=True)] * 6
    assert not StackedSegDataPreProcessor(**NORM, non_blocking=False)._non_blocking


def test_collate_stacks_images_and_narrows_labels():
    batch = stack_seg_collate(make_batch([(8, 12)] * 4))
    assert batch['inputs'].shape == (4, 3, 8, 12)
    assert batch['gt_sem_seg']['data'].shape == (4, 1, 8, 12)
    assert batch['gt_sem_seg']['data'].dtype == torch.uint8
    assert batch['gt_sem_seg']['dtype'] == torch.int64
    assert all('gt_sem_seg' not in s for s in batch['data_samples'])
    # label values that do not fit uint8 travel as they are, and come back unchanged
    wide = make_batch([(8, 12)] * 2, max_label=300)
    assert stack_seg_collate(copy.deepcopy(wide))['gt_sem_seg']['data'].dtype == torch.int64
    assert_same(*run_both(wide, training=True, size=(8, 12)))


@pytest.mark.parametrize('cfg', [dict(size=(24, 24)), dict(size_divisor=8)])
def test_crops_smaller_than_the_crop_size(cfg):
    # ADE20K: RandomResize (ratio 0.5-2) can leave an image smaller than the 512 crop
    items = make_batch([(16, 20), (20, 16), (20, 20)])
    batch = stack_seg_collate(copy.deepcopy(items))
    assert batch['inputs'].shape == (3, 3, 20, 20) and batch['img_shapes'][0] == (16, 20)
    assert batch['gt_sem_seg']['data'].shape == (3, 1, 20, 20)
    assert_same(*run_both(items, training=True, **cfg))


def test_inference_and_unstackable_labels_take_mmsegs_path():
    # inference: labels restored (for the metric) and images cut back to their size
    assert_same(*run_both(make_batch([(12, 16)] * 2), training=False))
    # a label map not the size of its image stays in its sample, padded as mmseg pads it
    items = make_batch([(16, 16)] * 2)
    items[1]['data_samples'].gt_sem_seg = PixelData(data=torch.zeros(1, 12, 16, dtype=torch.long))
    assert 'gt_sem_seg' not in stack_seg_collate(copy.deepcopy(items))
    assert_same(*run_both(items, training=True, size=(16, 16)))
    # images of different channel counts, or not tensors: pseudo_collate's lists
    items = make_batch([(8, 8)] * 2)
    items[1]['inputs'] = items[1]['inputs'][:1]
    assert isinstance(stack_seg_collate(copy.deepcopy(items))['inputs'], list)
    items[1]['inputs'] = items[0]['inputs'].numpy()
    batch = stack_seg_collate(items)
    assert isinstance(batch['inputs'], list) and 'gt_sem_seg' not in batch


def test_preprocessor_takes_pseudo_collate_batches_too():
    items = make_batch([(20, 20)] * 2)
    mmseg = SegDataPreProcessor(**NORM, size=(24, 24))(pseudo_collate(copy.deepcopy(items)), True)
    ours = StackedSegDataPreProcessor(**NORM, size=(24, 24))(pseudo_collate(copy.deepcopy(items)),
                                                             True)
    assert_same(mmseg, ours)


def test_training_needs_size_or_divisor():
    with pytest.raises(ValueError, match='exactly one of size and size_divisor'):
        StackedSegDataPreProcessor(**NORM)(stack_seg_collate(make_batch([(8, 8)] * 2)), True)


def test_registered_for_configs():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    assert FUNCTIONS.get('stack_seg_collate') is stack_seg_collate
    assert isinstance(MODELS.build(dict(type='StackedSegDataPreProcessor', size=(8, 8), **NORM)),
                      StackedSegDataPreProcessor)


def test_ade20k_config_trains_on_stacked_batches(tmp_path):
    """The fast ADE20K config's train loader (stack_seg_collate by name) and model preprocessor."""
    import cv2
    import numpy as np
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmseg.registry import MODELS

    import mmpatch.fast  # noqa: F401  (as the config's custom_imports)
    root = tmp_path / 'ade'
    rng = np.random.default_rng(0)
    for sub, shape, high in (('images', (48, 64, 3), 256), ('annotations', (48, 64), 151)):
        (root / sub / 'training').mkdir(parents=True)
        for i in range(2):
            suffix = 'jpg' if sub == 'images' else 'png'
            cv2.imwrite(str(root / sub / 'training' / f'ADE_train_{i}.{suffix}'),
                        rng.integers(0, high, shape, dtype=np.uint8))
    cfg = Config.fromfile('configs/fast/vit_b_p16_linear_fast.py')
    init_default_scope('mmseg')
    cfg.train_dataloader.dataset.data_root = str(root)
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    assert torch.is_tensor(batch['inputs']) and batch['gt_sem_seg']['data'].dtype == torch.uint8
    data = MODELS.build(cfg.model.data_preprocessor)(batch, True)
    assert data['inputs'].shape == (2, 3, 512, 512)
    for sample in data['data_samples']:
        assert sample.gt_sem_seg.data.dtype == torch.int64 and sample.gt_sem_seg.shape == (512, 512)
        assert set(sample.gt_sem_seg.data.unique().tolist()) <= set(range(150)) | {255}
