"""The toy seg scene families: strokes unchanged, shape named by shape only, control without fine detail."""
import filecmp
import hashlib
import json
import os

import cv2
import numpy as np
import pytest
from scipy.stats import chi2_contingency

from mmpatch.datasets.toy_scenes import (SHAPE_PAINTS, _rng, ensure_toy_seg, fine_detail_mask,
                                         make_knobs, make_seg_scene, read_meta, seg_class_names,
                                         toy_seg_metainfo, write_toy_seg)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 8


def _scenes(family, n, split='train', seed=0, num_classes=K):
    return [make_seg_scene(_rng(seed, split, i), (64, 64), num_classes, 1.0, family) for i in range(n)]


def _digest(scenes):
    h = hashlib.sha256()
    for img, label in scenes:
        h.update(img.tobytes())
        h.update(label.tobytes())
    return h.hexdigest()


def test_strokes_is_the_default_and_unchanged():
    """Sweeps' numbers depend on these exact images: the digests were taken before the families existed."""
    default = [make_seg_scene(_rng(0, split, i), (64, 64), K, 1.0) for split in ('train', 'val') for i in range(3)]
    strokes = [make_seg_scene(_rng(0, split, i), (64, 64), K, 1.0, 'strokes')
               for split in ('train', 'val') for i in range(3)]
    assert _digest(default) == _digest(strokes) == \
        'c4ea0382219d632a083814a3356986b6e7923d06aff6f670238a484efe7489dc'
    other_knobs = [make_seg_scene(_rng(3, 'train', i), (48, 80), 11, 2.0) for i in range(2)]
    assert _digest(other_knobs) == '186ee011933b076fa29fc3f4c4e44e0ca2a0a995609fe38da86d5624fcbc1ebb'
    assert make_knobs('seg').family == 'strokes' and seg_class_names(K) == seg_class_names(K, 'strokes')


@pytest.mark.parametrize('family', ['shape', 'control'])
def test_families_are_deterministic(family, tmp_path):
    a, b, short = (str(tmp_path / n) for n in ('a', 'b', 'short'))
    write_toy_seg(a, num_train=3, num_val=1, family=family)
    write_toy_seg(b, num_train=3, num_val=1, family=family)
    write_toy_seg(short, num_train=2, num_val=1, family=family)
    for split, name in (('training', 'toy_00001.png'), ('validation', 'toy_00000.png')):
        for kind in ('images', 'annotations'):
            assert filecmp.cmp(f'{a}/{kind}/{split}/{name}', f'{b}/{kind}/{split}/{name}', shallow=False)
            assert filecmp.cmp(f'{a}/{kind}/{split}/{name}', f'{short}/{kind}/{split}/{name}', shallow=False)
    assert _digest(_scenes(family, 2)) != _digest(_scenes(family, 2, seed=1))
    assert _digest(_scenes(family, 2)) != _digest(_scenes('strokes', 2))


def _figures(labels, imgs):
    """(class, extent, nearest shape paint) of every figure: an 8-connected component of one class."""
    paints = np.float32(SHAPE_PAINTS)
    out = []
    for label, img in zip(labels, imgs):
        for c in np.unique(label[label > 1]):
            n, comp, stats, _ = cv2.connectedComponentsWithStats((label == c).astype(np.uint8), connectivity=8)
            for j in range(1, n):
                colour = np.median(img[comp == j].astype(np.float32), 0)
                paint = int(np.linalg.norm(paints - colour, axis=1).argmin())
                out.append((int(c), int(stats[j, 2:4].max()), paint))
    return np.array(out)


def test_shape_figures_share_one_colour_distribution():
    """Which shared paint a figure wears is independent of its class (chi-square homogeneity).

    A class with a paint (or a few paints) of its own makes the table far from
    homogeneous: p drops below 1e-10.
    """
    scenes = _scenes('shape', 80)
    figs = _figures([lab for _, lab in scenes], [img for img, _ in scenes])
    table = np.zeros((K - 1, len(SHAPE_PAINTS)), int)
    np.add.at(table, (figs[:, 0] - 2, figs[:, 2]), 1)
    assert (table.sum(1) >= 20).all(), table  # every figure class, many times
    assert (table.sum(0) >= 20).all(), table  # every paint, many times
    assert chi2_contingency(table).pvalue > 1e-3, table


def test_shape_figures_are_thin_and_10_to_30_px():
    scenes = _scenes('shape', 40, split='val')
    labels = np.stack([lab for _, lab in scenes])
    figs = _figures(labels, [img for img, _ in scenes])
    assert figs[:, 1].min() >= 10 and figs[:, 1].max() <= 30, np.unique(figs[:, 1])
    assert np.ptp(figs[:, 1]) >= 15  # sizes spread over the range
    fine = np.stack([fine_detail_mask(lab) for lab in labels])
    assert fine[labels > 1].mean() > 0.95, 'figure lines must be at most 3 px thick'
    assert labels.min() >= 1 and (labels == 1).mean() > 0.8  # no unlabelled pixel; mostly background


def test_control_has_large_regions_only():
    labels = np.stack([lab for _, lab in _scenes('control', 60)])
    strokes = np.stack([lab for _, lab in _scenes('strokes', 20)])
    fine = np.mean([fine_detail_mask(lab).mean() for lab in labels])
    assert fine < 0.05 and fine < np.mean([fine_detail_mask(lab).mean() for lab in strokes]) / 4
    assert set(np.unique(labels)) == set(range(1, K + 1))  # every class, no unlabelled pixel


def test_class_names_say_the_family_roles():
    assert seg_class_names(K, 'shape') == ('background_1', 'ring_2', 'cross_3', 'corner_4', 'zigzag_5',
                                          'spiral_6', 'triangle_7', 'tee_8')
    assert seg_class_names(3, 'control') == ('region_1', 'region_2', 'region_3')
    assert seg_class_names(3) == ('region_1', 'stroke_2', 'object_3')
    assert toy_seg_metainfo(10, 'shape')['classes'][-1] == 'arrow_10'


def test_bad_family_and_knobs():
    for call in (lambda: make_knobs('seg', family='blobs'), lambda: make_seg_scene(_rng(0, 'train', 0), family='x'),
                 lambda: seg_class_names(K, 'Shape')):
        with pytest.raises(ValueError, match='valid families are strokes, shape, control'):
            call()
    with pytest.raises(ValueError, match='seg set only'):
        make_knobs('coco', family='shape')
    with pytest.raises(ValueError, match=r'num_classes for the toy seg set must be in 3\.\.10'):
        make_knobs('seg', family='shape', num_classes=11)
    with pytest.raises(ValueError, match=r'must be in 2\.\.150'):
        make_knobs('seg', family='control', num_classes=1)
    with pytest.raises(ValueError, match='detail_scale'):
        make_knobs('seg', family='control', detail_scale=2.0)
    assert make_knobs('seg', family='control', num_classes=2).num_classes == 2


def test_meta_carries_family_and_a_mismatch_is_refused(tmp_path):
    root = str(tmp_path / 'set')
    meta = write_toy_seg(root, num_train=1, num_val=1, family='control')
    assert meta['family'] == read_meta(root)['family'] == 'control'
    assert meta['classes'] == list(seg_class_names(K, 'control'))
    with pytest.raises(FileExistsError, match='other knobs'):
        write_toy_seg(root, num_train=1, num_val=1, family='shape')
    with pytest.raises(FileExistsError, match='other knobs'):
        ensure_toy_seg(root, num_train=1, num_val=1)  # strokes, the default
    assert ensure_toy_seg(root, num_train=1, num_val=1, family='control') == read_meta(root)
    write_toy_seg(root, num_train=1, num_val=1, family='shape', overwrite=True)
    assert read_meta(root)['family'] == 'shape' and read_meta(root)['classes'][1] == 'ring_2'


def test_a_meta_without_family_is_a_strokes_set(tmp_path):
    root = str(tmp_path / 'old')
    write_toy_seg(root, num_train=1, num_val=1)
    with open(f'{root}/meta.json') as f:
        meta = json.load(f)
    del meta['family']
    with open(f'{root}/meta.json', 'w') as f:
        json.dump(meta, f)
    assert read_meta(root)['family'] == 'strokes'
    mtime = os.path.getmtime(f'{root}/images/training/toy_00000.png')
    ensure_toy_seg(root, num_train=1, num_val=1)  # the same knobs: nothing rewritten
    assert os.path.getmtime(f'{root}/images/training/toy_00000.png') == mtime
    write_toy_seg(root, num_train=1, num_val=1)  # not "other knobs"
    with pytest.raises(FileExistsError, match='other knobs'):
        write_toy_seg(root, num_train=1, num_val=1, family='shape')


def test_make_toy_cli_shape_set_loads_in_mmseg(tmp_path):
    import runpy

    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmpatch  # noqa: F401  (registers ToySegDataset)
    main = runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main']
    out = str(tmp_path / 'shape')
    main(['seg', '--family', 'shape', '--out', out, '--num-train', '2', '--num-val', '2'])
    assert read_meta(out)['family'] == 'shape'
    init_default_scope('mmseg')
    cfg = dict(type='ToySegDataset', num_classes=K, data_root=out,
               data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
               pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')])
    ds = DATASETS.build(cfg)
    assert len(ds) == 2 and ds.metainfo['classes'] == seg_class_names(K, 'shape')
    gt = ds[0]['data_samples'].gt_sem_seg.data.numpy()[0]
    raw = cv2.imread(ds[0]['data_samples'].seg_map_path, cv2.IMREAD_UNCHANGED)
    assert np.array_equal(gt, raw.astype(np.int64) - 1) and (gt > 0).any()  # background is class 0
    assert DATASETS.build({**cfg, 'family': 'shape'}).metainfo['classes'] == seg_class_names(K, 'shape')
    with pytest.raises(ValueError, match="holds a shape set but the dataset config says family='control'"):
        DATASETS.build({**cfg, 'family': 'control'})
