"""The toy scene generator: determinism, layouts, COCO validity, and the fine detail it exists for."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from mmpatch.datasets.toy_scenes import (_rng, coco_class_names, fine_detail_mask, make_knobs,
                                         make_seg_scene, read_meta, seg_class_names, seg_class_roles,
                                         write_toy_coco, write_toy_seg)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 8


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _same_tree(a, b):
    files = _files(a)
    return files == _files(b) and all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)
                                      for f in files)


def _scenes(split, n, num_classes=K):
    return [make_seg_scene(_rng(0, split, i), (64, 64), num_classes) for i in range(n)]


def test_seg_layout_and_determinism(tmp_path):
    a, b, c, d = (str(tmp_path / n) for n in 'abcd')
    write_toy_seg(a, num_train=5, num_val=2, seed=0)
    write_toy_seg(b, num_train=5, num_val=2, seed=0)
    write_toy_seg(c, num_train=5, num_val=2, seed=1)
    write_toy_seg(d, num_train=3, num_val=2, seed=0)
    assert _same_tree(a, b)
    assert not filecmp.cmp(f'{a}/images/training/toy_00000.png', f'{c}/images/training/toy_00000.png',
                           shallow=False)
    # image i depends on (seed, split, i) only: a shorter set is a prefix
    assert filecmp.cmp(f'{a}/annotations/training/toy_00002.png', f'{d}/annotations/training/toy_00002.png',
                       shallow=False)

    for split, n in (('training', 5), ('validation', 2)):
        imgs = sorted(os.listdir(f'{a}/images/{split}'))
        assert imgs == sorted(os.listdir(f'{a}/annotations/{split}')) and len(imgs) == n
        for name in imgs:
            img = cv2.imread(f'{a}/images/{split}/{name}', cv2.IMREAD_UNCHANGED)
            ann = cv2.imread(f'{a}/annotations/{split}/{name}', cv2.IMREAD_UNCHANGED)
            assert img.shape == (64, 64, 3) and ann.shape == (64, 64) and ann.dtype == np.uint8
            assert ann.max() <= K and (ann == 0).mean() < 0.2  # 0 = unlabelled clutter, a little
    meta = read_meta(a)
    assert meta['classes'] == list(seg_class_names(K)) and len(meta['palette']) == K


def test_fine_detail_is_there():
    scenes = _scenes('train', 24)
    roles = seg_class_roles(K)
    strokes = [c + 1 for c, r in enumerate(roles) if r == 'stroke']
    objects = [c + 1 for c, r in enumerate(roles) if r == 'object']
    labels = np.stack([lab for _, lab in scenes])
    fine = np.stack([fine_detail_mask(lab) for lab in labels])
    stroke_px = np.isin(labels, strokes)
    assert fine[stroke_px].mean() > 0.9, 'strokes must be at most 3 px thick'
    assert stroke_px.mean() > 0.04 and fine.mean() > 0.08
    assert all(np.isin(lab, strokes).any() and np.isin(lab, objects).any() for lab in labels)
    assert np.mean([len(np.unique(lab[lab > 0])) for lab in labels]) >= 4  # many-class boundaries
    # objects are small: no object component wider than 8 px
    for lab in labels[:6]:
        n, _, stats, _ = cv2.connectedComponentsWithStats(np.isin(lab, objects).astype(np.uint8), 8)
        assert (np.median(stats[1:, cv2.CC_STAT_WIDTH]) if n > 1 else 0) <= 8


def _best_blocky_stroke_iou(labels, p, strokes):
    """Stroke IoU of the best prediction constant on p x p blocks (majority label per block)."""
    inter = union = 0
    for lab in labels:
        h, w = lab.shape
        blocks = lab.reshape(h // p, p, w // p, p).transpose(0, 2, 1, 3).reshape(h // p, w // p, -1)
        major = np.apply_along_axis(lambda v: np.bincount(v, minlength=256).argmax(), 2, blocks)
        pred = np.kron(major, np.ones((p, p), np.uint8))
        for c in strokes:
            inter += ((pred == c) & (lab == c)).sum()
            union += ((pred == c) | (lab == c)).sum()
    return inter / union


def test_coarse_patches_lose_strokes():
    labels = [lab for _, lab in _scenes('val', 8)]
    strokes = [c + 1 for c, r in enumerate(seg_class_roles(K)) if r == 'stroke']
    ious = {p: _best_blocky_stroke_iou(labels, p, strokes) for p in (8, 4, 2)}
    assert ious[8] < 0.3 and ious[8] < ious[4] < ious[2] < 1.0, ious


def test_colour_alone_does_not_name_the_class():
    """A per-pixel Gaussian colour classifier, fitted on training scenes, stays far from perfect."""
    def pixels(scenes):
        x = np.concatenate([img.reshape(-1, 3) for img, _ in scenes]).astype(np.float64)
        y = np.concatenate([lab.ravel() for _, lab in scenes])
        return x[y > 0], y[y > 0]

    x, y = pixels(_scenes('train', 20))
    xv, yv = pixels(_scenes('val', 6))
    scores = []
    for c in range(1, K + 1):
        xc = x[y == c]
        cov = np.cov(xc.T) + 1e-3 * np.eye(3)
        d = xv - xc.mean(0)
        maha = np.einsum('ni,ij,nj->n', d, np.linalg.inv(cov), d)
        scores.append(-0.5 * maha - 0.5 * np.linalg.slogdet(cov)[1] + np.log(len(xc) / len(x)))
    acc = (np.argmax(scores, 0) + 1 == yv).mean()
    assert 1 / K < acc < 0.75, acc


def test_toy_seg_dataset_reduces_zero_label(toy_seg_root):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmpatch  # noqa: F401  (registers ToySegDataset)
    init_default_scope('mmseg')
    cfg = dict(type='ToySegDataset', num_classes=K, data_root=str(toy_seg_root),
               data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
               pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                         dict(type='PackSegInputs')])
    ds = DATASETS.build(cfg)
    assert len(ds) == 4 and ds.metainfo['classes'] == seg_class_names(K)
    sample = ds[0]
    gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    raw = cv2.imread(sample['data_samples'].seg_map_path, cv2.IMREAD_UNCHANGED)
    assert np.array_equal(gt, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    with pytest.raises(ValueError, match='num_classes=8'):
        DATASETS.build({**cfg, 'num_classes': 5})


def test_coco_json_is_valid(toy_coco_root):
    from pycocotools.coco import COCO
    root = str(toy_coco_root)
    coco = COCO(f'{root}/annotations/instances_train.json')
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(coco_class_names(6))
    thin = small = 0
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        assert os.path.isfile(f"{root}/train/{info['file_name']}")
        occupied = np.zeros((info['height'], info['width']), int)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            mask = coco.annToMask(ann)
            occupied += mask
            ys, xs = np.nonzero(mask)
            assert ann['iscrowd'] == 0 and len(ann['segmentation'][0]) >= 6
            assert ann['area'] == mask.sum() > 0
            assert np.allclose(ann['bbox'], [xs.min(), ys.min(), xs.ptp() + 1, ys.ptp() + 1])
            small += ann['area'] <= 64
            thin += min(cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))[1]) <= 3
        assert occupied.max() <= 1, 'instances must not overlap'
    assert small > 0 and thin > 0


def test_coco_set_loads_in_mmdet_and_matches_base_config(toy_coco_root):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(os.path.join(REPO, 'configs/_base_/datasets/toy_coco.py'))
    assert cfg.classes == coco_class_names(6)
    ds = CocoDataset(data_root=str(toy_coco_root), ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='val/'), metainfo=dict(classes=cfg.classes), test_mode=True,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    with open(f'{toy_coco_root}/annotations/instances_val.json') as f:
        n_anns = len(json.load(f)['annotations'])
    loaded = [ds[i] for i in range(len(ds))]
    assert len(ds) == 4 and sum(len(s['gt_bboxes_labels']) for s in loaded) == n_anns
    assert all(s['gt_masks'].masks.shape[1:] == (64, 64) for s in loaded if len(s['gt_masks']))


def test_bad_knobs_and_folders(tmp_path):
    for kind, bad in (('seg', dict(num_classes=2)), ('seg', dict(num_classes=151)),
                      ('coco', dict(num_classes=0)), ('seg', dict(img_size=8))):
        with pytest.raises(ValueError):
            make_knobs(kind, **bad)
    root = str(tmp_path / 's')
    write_toy_seg(root, num_train=1, num_val=1)
    with pytest.raises(FileExistsError, match='other knobs'):
        write_toy_seg(root, num_train=2, num_val=1)
    write_toy_seg(root, num_train=2, num_val=1, overwrite=True)
    assert len(os.listdir(f'{root}/images/training')) == 2
    (tmp_path / 'foreign').mkdir()
    (tmp_path / 'foreign' / 'x.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not empty'):
        write_toy_coco(str(tmp_path / 'foreign'), num_train=1, num_val=1)


def test_make_toy_cli(tmp_path, capsys):
    import runpy
    main = runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main']
    out = str(tmp_path / 'c')
    main(['coco', '--out', out, '--img-size', '48', '32', '--num-train', '2', '--num-val', '1',
          '--num-classes', '3', '--detail-scale', '2', '--seed', '5'])
    meta = read_meta(out)
    assert meta['img_size'] == [48, 32] and meta['num_classes'] == 3 and meta['seed'] == 5
    assert cv2.imread(f'{out}/train/toy_00001.png').shape == (48, 32, 3)
    assert 'toy coco: 2 train + 1 val' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='num_classes for the toy seg set'):
        main(['seg', '--out', str(tmp_path / 's'), '--num-classes', '200'])


def test_make_toy_cli_writes_jpeg_images_on_request(tmp_path):
    import runpy
    main = runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main']
    png, jpg = str(tmp_path / 'png'), str(tmp_path / 'jpg')
    for out, fmt in ((png, 'png'), (jpg, 'jpg')):
        main(['seg', '--out', out, '--num-train', '2', '--num-val', '1', '--image-format', fmt])
    assert sorted(os.listdir(f'{jpg}/images/training')) == ['toy_00000.jpg', 'toy_00001.jpg']
    assert 'image_format' not in read_meta(png) and read_meta(jpg)['image_format'] == 'jpg'
    lossless, jpeg = (cv2.imread(path, cv2.IMREAD_GRAYSCALE).astype(int) for path in
                      (f'{png}/images/training/toy_00001.png', f'{jpg}/images/training/toy_00001.jpg'))
    assert 0 < np.abs(jpeg - lossless).mean() < 4  # the same scene; JPEG keeps luma (not fine chroma)
    assert filecmp.cmp(f'{png}/annotations/training/toy_00001.png',
                       f'{jpg}/annotations/training/toy_00001.png', shallow=False)
    with pytest.raises(SystemExit, match='other knobs'):  # a PNG set is not silently replaced
        main(['seg', '--out', png, '--num-train', '2', '--num-val', '1', '--image-format', 'jpg'])
    with pytest.raises(SystemExit, match='seg set only'):
        main(['coco', '--out', str(tmp_path / 'c'), '--image-format', 'jpg'])
    with pytest.raises(ValueError, match="image_format must be 'png' or 'jpg'"):
        write_toy_seg(str(tmp_path / 'w'), num_train=1, num_val=1, image_format='webp')


def _coco_boxes(root, split='train'):
    with open(f'{root}/annotations/instances_{split}.json') as f:
        data = json.load(f)
    return data['images'], [a['bbox'] for a in data['annotations']]


def test_coco_object_sizes_log_uniform_in_range_and_inside(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    knobs = dict(img_size=128, num_train=6, num_val=1, min_object_size=3, max_object_size=40)
    write_toy_coco(a, seed=0, **knobs)
    images, boxes = _coco_boxes(a)
    sides = np.array([max(w, h) for _, _, w, h in boxes])
    assert len(sides) >= 6 * 12  # 16..32 tries per 128x128 image, few left out
    # size = the polygon box's longer side; rasterising moves the mask's box by 1 px at most
    assert sides.min() >= 2 and sides.max() <= 41, (sides.min(), sides.max())
    # log-uniform: each octave as full; half the objects are under sqrt(3 * 40) ~ 11 px
    assert 0.35 < (sides < 11).mean() < 0.65 and (sides > 20).mean() > 0.15
    for x, y, w, h in boxes:  # wholly inside the image
        assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
    meta = read_meta(a)
    assert (meta['min_object_size'], meta['max_object_size']) == (3.0, 40.0)
    # deterministic by seed
    write_toy_coco(b, seed=0, **knobs)
    write_toy_coco(c, seed=1, **knobs)
    assert _same_tree(a, b)
    assert _coco_boxes(c)[1] != boxes


def test_coco_default_size_mix_meta_reads_without_size_knobs(tmp_path):
    root = str(tmp_path / 'old')
    write_toy_coco(root, num_train=1, num_val=1)
    with open(f'{root}/meta.json') as f:
        meta = json.load(f)
    assert meta['min_object_size'] is None and meta['max_object_size'] is None
    del meta['min_object_size'], meta['max_object_size']  # a set made before the knobs
    with open(f'{root}/meta.json', 'w') as f:
        json.dump(meta, f)
    write_toy_coco(root, num_train=1, num_val=1)  # the same knobs: no 'other knobs' error


@pytest.mark.parametrize('bad, match', [
    (dict(min_object_size=3), 'give both min_object_size and max_object_size'),
    (dict(max_object_size=40), 'give both'),
    (dict(min_object_size=1, max_object_size=40), 'min_object_size must be >= 2'),
    (dict(min_object_size=20, max_object_size=10), r'max_object_size \(10\) must be >= '),
    (dict(min_object_size=3, max_object_size=65), 'at most half the shorter image side'),
    (dict(min_object_size=3, max_object_size=40, detail_scale=2.0), 'detail_scale scales'),
])
def test_coco_bad_object_sizes(bad, match):
    with pytest.raises(ValueError, match=match):
        make_knobs('coco', img_size=128, **bad)


def test_object_sizes_are_coco_only_in_the_cli(tmp_path, capsys):
    import runpy
    main = runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main']
    with pytest.raises(ValueError, match='toy coco set only'):
        make_knobs('seg', min_object_size=3, max_object_size=8)
    with pytest.raises(SystemExit, match='coco set only'):
        main(['seg', '--out', str(tmp_path / 's'), '--min-object-size', '3'])
    with pytest.raises(SystemExit, match='at most half the shorter image side'):
        main(['coco', '--out', str(tmp_path / 'c'), '--min-object-size', '3',
              '--max-object-size', '40'])
    out = str(tmp_path / 'c')
    main(['coco', '--out', out, '--img-size', '96', '--num-train', '1', '--num-val', '1',
          '--min-object-size', '4', '--max-object-size', '30'])
    assert (read_meta(out)['min_object_size'], read_meta(out)['max_object_size']) == (4.0, 30.0)
