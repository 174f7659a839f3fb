"""PerImageIoUMetric: IoUMetric's metrics, plus the per-image areas saved to an .npz."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation.metrics import IoUMetric
from mmseg.structures import SegDataSample

import mmpatch  # noqa: F401  (registers the metric)
from mmpatch.evaluation import PerImageIoUMetric
from mmpatch.sweep.stats import bootstrap_miou_ci

CLASSES = ('wall', 'building', 'sky', 'floor', 'tree', 'never')


def _samples(n=6, h=24, w=32, seed=0, with_paths=True):
    """Data samples as the evaluator passes them (dicts); labels use classes 0-4 and 255
    (ignored); predictions use 0-4 - class 5 is absent from both (IoU NaN, skipped),
    and class 4 is only ever predicted (IoU 0)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = torch.randint(0, 4, (1, h, w), generator=g)
        label[:, :3, :5] = 255
        pred = label.clone()
        flip = torch.rand((1, h, w), generator=g) < 0.3
        pred[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=g)
        pred[pred == 255] = 0
        ds = SegDataSample()
        ds.gt_sem_seg = PixelData(data=label)
        ds.pred_sem_seg = PixelData(data=pred)
        if with_paths:
            ds.set_metainfo(dict(img_path=f'/data/val/img_{i:03d}.jpg'))
        out.append(ds.to_dict())
    return out


def _run(metric, samples, batch=4):
    metric.dataset_meta = dict(classes=CLASSES)
    for i in range(0, len(samples), batch):
        metric.process({}, samples[i:i + batch])
    return metric.evaluate(len(samples))


def test_registered():
    from mmseg.registry import METRICS
    assert METRICS.get('PerImageIoUMetric') is PerImageIoUMetric
    m = METRICS.build(dict(type='PerImageIoUMetric', iou_metrics=['mIoU', 'mDice']))
    assert isinstance(m, IoUMetric) and m.per_image_file is None and m.metrics == ['mIoU', 'mDice']


@pytest.mark.parametrize('with_paths', [True, False])
def test_metrics_equal_iou_metric_and_file_sums_to_totals(tmp_path, with_paths):
    samples = _samples(with_paths=with_paths)
    ref = _run(IoUMetric(iou_metrics=['mIoU', 'mFscore']), samples)
    path = tmp_path / 'new' / 'dir' / 'per_image.npz'
    metric = PerImageIoUMetric(iou_metrics=['mIoU', 'mFscore'], per_image_file=str(path))
    got = _run(metric, samples)
    assert got == ref
    assert 0 < got['mIoU'] < 100

    with np.load(path) as f:
        saved = {k: f[k] for k in f.files}
    n, c = len(samples), len(CLASSES)
    for k in ('intersect', 'union', 'pred_label', 'label'):
        assert saved[k].shape == (n, c)
    assert list(saved['classes']) == list(CLASSES)
    if with_paths:
        assert list(saved['img_paths']) == [f'/data/val/img_{i:03d}.jpg' for i in range(n)]
    else:
        assert 'img_paths' not in saved
    # totals from the label maps themselves
    labels = torch.cat([s['gt_sem_seg']['data'].flatten() for s in samples])
    preds = torch.cat([s['pred_sem_seg']['data'].flatten() for s in samples])
    keep = labels != 255
    labels, preds = labels[keep], preds[keep]
    np.testing.assert_array_equal(saved['label'].sum(0), np.bincount(labels, minlength=c))
    np.testing.assert_array_equal(saved['pred_label'].sum(0), np.bincount(preds, minlength=c))
    np.testing.assert_array_equal(saved['intersect'].sum(0),
                                  np.bincount(labels[labels == preds], minlength=c))
    np.testing.assert_array_equal(saved['union'],
                                  saved['pred_label'] + saved['label'] - saved['intersect'])
    assert saved['label'][:, 5].sum() == 0 and saved['pred_label'][:, 4].sum() > 0
    # per image: the first image's areas are its own
    lab0 = samples[0]['gt_sem_seg']['data'].flatten()
    np.testing.assert_array_equal(saved['label'][0], np.bincount(lab0[lab0 != 255], minlength=c))

    # the bootstrap's point estimate from the file is the metric's mIoU
    point, lo, hi = bootstrap_miou_ci(str(path), n_boot=500)
    assert abs(point - got['mIoU']) <= 0.005 + 1e-9
    assert lo <= point <= hi


def test_no_file_without_per_image_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = _samples(n=3)
    got = _run(PerImageIoUMetric(), samples)
    assert got == _run(IoUMetric(), samples)
    assert list(tmp_path.iterdir()) == []
