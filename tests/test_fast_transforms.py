"""FastPhotoMetricDistortion and FastRandomCrop give mmseg's outputs for the same random state."""
import copy
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmseg.datasets.transforms import PhotoMetricDistortion, RandomCrop

import mmseg
import mmpatch.fast  # noqa: F401  (registers the transforms)
from mmpatch.fast import FastPhotoMetricDistortion, FastRandomCrop
from mmpatch.fast.fast_random_crop import label_counts

REPO = Path(__file__).resolve().parents[1]


def run_seeded(transform, results, seed):
    """``transform(results)`` from NumPy random state ``seed``; also the next draw after it."""
    np.random.seed(seed)
    out = transform(copy.deepcopy(results))
    return out, np.random.randint(1 << 30)


def scene(rng, h, w, num_labels=150, dominant=0.0, ignore_frac=0.0):
    """A uint8 BGR image and a label map; ``dominant``: that fraction of it one class (crop retries)."""
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.integers(0, num_labels, (h, w)).astype(np.uint8)
    label[:, :int(w * dominant)] = 7
    label[rng.random((h, w)) < ignore_frac] = 255
    return dict(img=img, gt_seg_map=label, seg_fields=['gt_seg_map'], img_shape=(h, w))


@pytest.mark.parametrize('seed', range(12))
def test_photo_metric_distortion_matches_mmseg(seed):
    results = scene(np.random.default_rng(seed), 37, 53)
    ours, ours_next = run_seeded(FastPhotoMetricDistortion(), results, seed)
    ref, ref_next = run_seeded(PhotoMetricDistortion(), results, seed)
    assert ours['img'].dtype == np.uint8
    np.testing.assert_array_equal(ours['img'], ref['img'])
    assert ours_next == ref_next  # the same draws were taken


def test_photo_metric_distortion_changes_images_and_keeps_arguments():
    results = scene(np.random.default_rng(0), 16, 16)
    changed = sum(not np.array_equal(run_seeded(FastPhotoMetricDistortion(), results, s)[0]['img'],
                                     results['img']) for s in range(8))
    assert changed >= 6  # each of the 4 maps runs with probability 1/2
    t = FastPhotoMetricDistortion(brightness_delta=5, contrast_range=(0.9, 1.1),
                                  saturation_range=(0.8, 1.2), hue_delta=3)
    assert repr(t).startswith('FastPhotoMetricDistortion(brightness_delta=5')
    for seed in range(6):
        np.testing.assert_array_equal(
            run_seeded(t, results, seed)[0]['img'],
            run_seeded(PhotoMetricDistortion(5, (0.9, 1.1), (0.8, 1.2), 3), results, seed)[0]['img'])


def test_photo_metric_distortion_float_images_take_mmsegs_path():
    results = scene(np.random.default_rng(1), 9, 11)
    results['img'] = results['img'].astype(np.float32)
    for seed in range(4):
        np.testing.assert_array_equal(run_seeded(FastPhotoMetricDistortion(), results, seed)[0]['img'],
                                      run_seeded(PhotoMetricDistortion(), results, seed)[0]['img'])


@pytest.mark.parametrize('dominant,ignore_frac,cat_max_ratio', [
    (0.0, 0.0, 0.75), (0.9, 0.0, 0.75), (0.9, 0.3, 0.75), (1.0, 0.0, 0.75), (0.5, 0.1, 1.0)])
def test_random_crop_matches_mmseg(dominant, ignore_frac, cat_max_ratio):
    for seed in range(6):
        results = scene(np.random.default_rng(seed), 48, 70, num_labels=4, dominant=dominant,
                        ignore_frac=ignore_frac)
        kwargs = dict(crop_size=(24, 30), cat_max_ratio=cat_max_ratio)
        ours, ours_next = run_seeded(FastRandomCrop(**kwargs), results, seed)
        ref, ref_next = run_seeded(RandomCrop(**kwargs), results, seed)
        for key in ('img', 'gt_seg_map'):
            np.testing.assert_array_equal(ours[key], ref[key])
        assert ours['img'].shape[:2] == (24, 30) and ours['img_shape'] == ref['img_shape']
        assert ours_next == ref_next  # as many retries as mmseg's


def test_random_crop_retries_when_one_class_dominates():
    results = scene(np.random.default_rng(0), 40, 100, num_labels=4, dominant=0.7)

    def crops_mostly_7(cat_max_ratio):
        return sum((run_seeded(FastRandomCrop(crop_size=(20, 20), cat_max_ratio=cat_max_ratio),
                               results, s)[0]['gt_seg_map'] == 7).mean() >= 0.75 for s in range(20))

    assert crops_mostly_7(1.0) >= 8  # no check: ~70% of the crops fall in the one-class block
    assert crops_mostly_7(0.75) == 0  # the check draws again until a crop has other classes


@pytest.mark.parametrize('dtype', [np.uint8, np.int64])
def test_label_counts_is_unique_without_the_ignored_label(dtype):
    rng = np.random.default_rng(3)
    seg = rng.choice(np.array([0, 3, 4, 149, 255]), size=(13, 17)).astype(dtype)
    labels, counts = np.unique(seg, return_counts=True)
    for ignore in (255, 3, -1):
        np.testing.assert_array_equal(label_counts(seg, ignore), counts[labels != ignore])
    np.testing.assert_array_equal(label_counts(seg[::2, 1::3], 255),  # a crop is a strided view
                                  np.unique(seg[::2, 1::3], return_counts=True)[1][:-1])


def test_ade20k_pipelines_are_mmsegs_and_mmsegs_with_the_two_drop_ins():
    mmseg_base = Config.fromfile(osp.join(osp.dirname(mmseg.__file__), '.mim/configs/_base_/datasets/ade20k.py'))
    stock = Config.fromfile(REPO / 'configs/ade20k/vit_b_p16_linear.py')
    assert stock.train_dataloader.dataset.pipeline == mmseg_base.train_pipeline
    fast = Config.fromfile(REPO / 'configs/fast/vit_b_p16_linear_fast.py')
    swapped = {'RandomCrop': 'FastRandomCrop', 'PhotoMetricDistortion': 'FastPhotoMetricDistortion'}
    expected = [dict(t, type=swapped.get(t['type'], t['type'])) for t in mmseg_base.train_pipeline]
    assert fast.train_dataloader.dataset.pipeline == expected
    assert [t['type'] for t in fast.train_pipeline].count('FastRandomCrop') == 1
