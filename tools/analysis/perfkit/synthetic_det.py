"""Synthetic detection batches and tiny-model overrides, for smoke tests and benchmarks.

``synthetic_det_batch`` makes the dict an mmdet ``DetDataPreprocessor`` takes
(uint8 images of any sizes, each with random boxes, labels and masks), so a
detector runs end to end without a dataset. ``shrink_det_model_cfg`` turns a
real detector config into a tiny one of the same structure (same backbone type
and patch size, same neck strides, same heads) that runs on a CPU in well under
a second.
"""
import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

# Smallest arch dicts of each backbone (the backbone contract accepts explicit numbers).
TINY_ARCH = {
    'PatchViT': dict(embed_dims=32, num_layers=2, num_heads=2),
    'PatchMamba': dict(embed_dims=32, num_layers=2, d_state=16, headdim=16),
}


def synthetic_det_batch(image_sizes, num_boxes=3, num_classes=80, seed=0):
    """Random images of the given ``(h, w)`` sizes with ``num_boxes`` objects each.

    Every object is a filled ellipse (its mask) inscribed in its box, so boxes
    and masks agree. Returns ``dict(inputs=[uint8 (3, h, w)], data_samples=[DetDataSample])``.
    """
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for img_id, (h, w) in enumerate(image_sizes):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)))
        boxes, masks = [], []
        yy, xx = np.mgrid[:h, :w] + 0.5
        for _ in range(num_boxes):
            bw, bh = rng.uniform(0.15, 0.6) * w, rng.uniform(0.15, 0.6) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes.append([x0, y0, x0 + bw, y0 + bh])
            cx, cy = x0 + bw / 2, y0 + bh / 2
            inside = ((xx - cx) / (bw / 2)) ** 2 + ((yy - cy) / (bh / 2)) ** 2 <= 1
            masks.append(inside.astype(np.uint8))
        sample = DetDataSample(metainfo=dict(img_id=img_id, img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            labels=torch.from_numpy(rng.integers(0, num_classes, num_boxes)).long(),
            masks=BitmapMasks(np.stack(masks), h, w))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _as_list(cfg):
    return list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]


def shrink_det_model_cfg(model_cfg, width=32, fc_channels=64, max_proposals=64, rcnn_samples=32):
    """Make an mmdet two-stage detector config tiny in place: tiny backbone arch, pyramid
    and heads ``width`` channels wide, narrow box-head fc layers, fewer proposals and RoIs.

    The structure stays the real one (backbone type, patch size, with_cp, neck
    strides, every head, its convs and its inputs), so a forward checks the real wiring.
    """
    backbone = model_cfg['backbone']
    if backbone['type'] not in TINY_ARCH:
        raise ValueError(f"no tiny arch for backbone type {backbone['type']!r}; "
                         f'add one to TINY_ARCH ({sorted(TINY_ARCH)})')
    backbone['arch'] = dict(TINY_ARCH[backbone['type']])
    backbone['img_size'] = 64
    model_cfg['neck'].update(in_channels=backbone['arch']['embed_dims'], out_channels=width)
    model_cfg['rpn_head'].update(in_channels=width, feat_channels=width)
    roi_head = model_cfg['roi_head']
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        for extractor in _as_list(roi_head[key]):
            extractor['out_channels'] = width
    for head in _as_list(roi_head['bbox_head']):
        head.update(in_channels=width, fc_out_channels=fc_channels)
    for head in _as_list(roi_head['mask_head']):
        head.update(in_channels=width, conv_out_channels=width)
    for phase in ('train_cfg', 'test_cfg'):
        rpn = model_cfg[phase]['rpn_proposal' if phase == 'train_cfg' else 'rpn']
        rpn.update(nms_pre=max_proposals, max_per_img=max_proposals)
    for stage in _as_list(model_cfg['train_cfg']['rcnn']):
        stage['sampler']['num'] = rcnn_samples
    model_cfg['train_cfg']['rpn']['sampler']['num'] = rcnn_samples
    return model_cfg
