"""COCO detection configs: the recipe, every config's model on a padded non-square batch,
bf16 autocast through the detector, pyramid map sizes for any p, the toy train/test round trip
(the detection benchmark's smoke run: tests/test_analysis_tools.py)."""
import copy
import glob
import math
import os.path as osp
import re
import runpy
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpatch  # noqa: F401  (registers models, heads, the optimizer constructor)
from mmpatch.models.backbones import patch_mamba, patch_vit

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# synthetic batches and tiny detector configs, shared with ``benchmark.py detection``
_SYNTHETIC_DET = runpy.run_path(osp.join(REPO, 'tools', 'analysis', 'perfkit', 'synthetic_det.py'))
shrink_det_model_cfg = _SYNTHETIC_DET['shrink_det_model_cfg']
synthetic_det_batch = _SYNTHETIC_DET['synthetic_det_batch']
COCO_DIR = osp.join(REPO, 'configs', 'coco')
CONFIGS = sorted(glob.glob(osp.join(COCO_DIR, '*.py')))
NAME = re.compile(r'(?P<family>vit|adventurer)_(?P<arch>[tb])_p(?P<p>\d+)_'
                  r'(?P<det>cascade_mask_rcnn|mask_rcnn)\.py')
ARCH_PARSERS = {'PatchViT': patch_vit.parse_arch, 'PatchMamba': patch_mamba.parse_arch}
# Two images of different orientation: DetDataPreprocessor pads both to 96 x 96.
IMAGE_SIZES = [(64, 96), (96, 64)]


def _run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='module', autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


@pytest.fixture(scope='module')
def parsed():
    """Fully parsed config of the first leaf of each (family, detector); mmdet:: bases are slow
    to resolve (~0.2 s each), so the other leaves are merged onto these (see ``leaf_config``)."""
    out = {}
    for path in CONFIGS:
        m = NAME.fullmatch(osp.basename(path))
        key = (m['family'], m['det'])
        if key not in out:
            out[key] = (path, Config.fromfile(path))
    return out


def leaf_config(path, parsed):
    """``path``'s config: its own settings merged onto a fully parsed leaf with the same bases,
    exactly as mmengine merges a child into its bases."""
    m = NAME.fullmatch(osp.basename(path))
    ref_path, ref_cfg = parsed[(m['family'], m['det'])]
    own = runpy.run_path(path)
    assert own['_base_'] == runpy.run_path(ref_path)['_base_'], \
        f'{path} has other bases than {ref_path}'
    cfg = copy.deepcopy(ref_cfg)
    cfg.merge_from_dict({k: v for k, v in own.items() if not k.startswith('_')})
    return cfg


def test_config_names_and_generator_in_sync():
    names = {osp.basename(p) for p in CONFIGS}
    expected = {f'{f}_{a}_p{p}_cascade_mask_rcnn.py' for f in ('vit', 'adventurer') for a in 'tb'
                for p in (32, 16, 8, 4, 2)}
    assert expected <= names
    assert {'vit_t_p16_mask_rcnn.py', 'vit_b_p16_mask_rcnn.py'} <= names
    assert all(NAME.fullmatch(n) for n in names), names
    proc = _run_tool('tools/misc/make_coco_configs.py', '--check')
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_recipe(path, parsed):
    cfg = leaf_config(path, parsed)
    m = NAME.fullmatch(osp.basename(path))
    p = int(m['p'])
    backbone, neck, model = cfg.model.backbone, cfg.model.neck, cfg.model
    # backbone and neck agree with the file name and with each other
    assert backbone.type == ('PatchViT' if m['family'] == 'vit' else 'PatchMamba')
    assert backbone.arch == {'t': 'tiny', 'b': 'base'}[m['arch']]
    assert backbone.patch_size == neck.in_stride == p
    assert neck.in_channels == ARCH_PARSERS[backbone.type](backbone.arch)['embed_dims']
    assert backbone.with_cp == (p <= 8)
    # the simple feature pyramid feeds mmdet's heads at the anchor strides
    assert tuple(neck.out_strides) == (4, 8, 16, 32, 64)
    assert list(neck.out_strides) == list(model.rpn_head.anchor_generator.strides)
    assert neck.out_channels == 256 == model.rpn_head.in_channels
    roi = model.roi_head
    assert list(roi.bbox_roi_extractor.featmap_strides) == list(neck.out_strides[:4])
    assert model.data_preprocessor.pad_size_divisor == 32 and 32 % p == 0  # p divides the pad
    assert model.rpn_head.type == 'FloatRPNHead'
    assert roi.bbox_roi_extractor.type == roi.mask_roi_extractor.type == 'FloatSingleRoIExtractor'
    num_stages = 3 if m['det'] == 'cascade_mask_rcnn' else 1
    assert len(roi.bbox_head) == num_stages if num_stages > 1 else roi.bbox_head.num_classes == 80
    # the paper's recipe: AdamW 1e-4 / wd 0.05, 12 epochs; bf16 AMP and layer decay are ours
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.dtype == 'bfloat16'
    assert ow.optimizer.type == 'AdamW' and ow.optimizer.lr == 1e-4
    assert ow.optimizer.weight_decay == 0.05
    assert ow.constructor == 'LayerDecayOptimWrapperConstructor'
    assert 0 < ow.paramwise_cfg.layer_decay_rate < 1
    assert cfg.train_cfg.max_epochs == 12 and cfg.default_scope == 'mmdet'
    resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize']
    assert resize[0].scale == (1333, 800)
    assert cfg.train_dataloader.batch_size == 2


def _forward_losses(cfg, data, autocast_dtype=None):
    """Build the model, run one loss forward (under autocast if a dtype is given); the neck's
    output maps are captured by a hook (the backbone runs once, as in a training step)."""
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    batch = model.data_preprocessor(data, True)
    captured = []
    hook = model.neck.register_forward_hook(lambda module, args, out: captured.append(out))
    with torch.autocast('cpu', dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        losses = model.loss(batch['inputs'], batch['data_samples'])
    hook.remove()
    loss, _ = model.parse_losses(losses)
    return model, batch, captured[0], losses, loss


def _one_config_per_model(paths):
    """With the tiny arch, t and b configs of a (family, p, detector) build the same model."""
    seen, out = set(), []
    for path in paths:
        m = NAME.fullmatch(osp.basename(path))
        key = (m['family'], m['p'], m['det'])
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


@pytest.mark.parametrize('path', _one_config_per_model(CONFIGS), ids=osp.basename)
def test_config_model_runs_on_padded_non_square_batch(path, parsed):
    cfg = leaf_config(path, parsed)
    shrink_det_model_cfg(cfg.model)
    model, batch, feats, losses, loss = _forward_losses(cfg, synthetic_det_batch(IMAGE_SIZES))
    pad_h, pad_w = batch['inputs'].shape[-2:]
    assert (pad_h, pad_w) == (96, 96)
    # the pyramid has exactly the map sizes mmdet's anchors assume: ceil(padded side / stride)
    strides = cfg.model.neck.out_strides
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(pad_h / s), math.ceil(pad_w / s))
                                                     for s in strides]
    assert torch.isfinite(loss) and loss > 0
    num_stages = 3 if 'cascade' in path else 1
    prefixes = [f's{i}.' for i in range(num_stages)] if num_stages > 1 else ['']
    for prefix in prefixes:
        for name in ('loss_cls', 'loss_bbox', 'loss_mask'):
            assert f'{prefix}{name}' in losses, sorted(losses)


def test_bf16_autocast_forward_backward_reaches_the_backbone(parsed):
    """mmcv's NMS/RoIAlign have no bf16 kernels: the Float* heads must make bf16 AMP work."""
    cfg = leaf_config(osp.join(COCO_DIR, 'vit_t_p8_cascade_mask_rcnn.py'), parsed)
    shrink_det_model_cfg(cfg.model)
    model, _, feats, _, loss = _forward_losses(cfg, synthetic_det_batch(IMAGE_SIZES),
                                               autocast_dtype=torch.bfloat16)
    assert feats[0].dtype == torch.bfloat16  # autocast really was on
    assert torch.isfinite(loss)
    loss.backward()
    grad = model.backbone.patch_embed.proj.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize('family', ['vit', 'adventurer'])
@pytest.mark.parametrize('patch_size', [12, 7])
def test_patch_sizes_that_do_not_divide_the_padding(parsed, family, patch_size):
    """p not dividing 32: with pad_size_divisor = lcm(32, p) the maps are exact again."""
    cfg = leaf_config(osp.join(COCO_DIR, f'{family}_t_p16_cascade_mask_rcnn.py'), parsed)
    shrink_det_model_cfg(cfg.model)
    cfg.model.backbone.patch_size = cfg.model.neck.in_stride = patch_size
    divisor = math.lcm(32, patch_size)
    cfg.model.data_preprocessor.pad_size_divisor = divisor
    _, batch, feats, _, loss = _forward_losses(cfg, synthetic_det_batch(IMAGE_SIZES))
    pad_h, pad_w = batch['inputs'].shape[-2:]
    assert pad_h % divisor == 0 and pad_w % divisor == 0
    assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(pad_h / s), math.ceil(pad_w / s))
                                                     for s in cfg.model.neck.out_strides]
    assert torch.isfinite(loss)


TOY_CONFIGS = ['configs/toy/vit_t_p8_mask_rcnn_toy.py', 'configs/toy/vit_t_p4_mask_rcnn_toy.py']


def _toy_data_options(root):
    opts = [f'{loader}.dataset.data_root={root}/'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return opts + [f'{ev}.ann_file={root}/annotations/instances_val.json'
                   for ev in ('val_evaluator', 'test_evaluator')]


@pytest.mark.parametrize('config', TOY_CONFIGS[:1])
def test_toy_config_model_runs(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    p = cfg.model.backbone.patch_size
    assert f'_p{p}_' in config and cfg.model.neck.in_stride == p
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU: no AMP
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert cfg.model.roi_head.bbox_head.num_classes == len(classes)
    data = synthetic_det_batch([(64, 64)] * 2, num_classes=len(classes))
    _, batch, feats, _, loss = _forward_losses(cfg, data)
    assert [f.shape[-1] for f in feats] == [math.ceil(64 / s) for s in cfg.model.neck.out_strides]
    assert torch.isfinite(loss)


def test_toy_train_then_test_prints_bbox_and_segm_ap(toy_coco_root, tmp_path):
    config, iters = TOY_CONFIGS[1], 3
    data = _toy_data_options(toy_coco_root)
    train = _run_tool('tools/train.py', config, '--work-dir', str(tmp_path), '--cfg-options',
                      f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                      f'default_hooks.checkpoint.interval={iters}', *data)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    ckpt = tmp_path / f'iter_{iters}.pth'
    assert ckpt.is_file()
    test = _run_tool('tools/test.py', config, str(ckpt), '--work-dir', str(tmp_path / 'test'),
                     '--cfg-options', *data)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    out = test.stdout + test.stderr
    for metric in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert re.search(rf'{metric}: -?\d+\.\d+', out), out[-3000:]
