"""The toy detection grid (configs/toy_det, configs/toy_det_gpu): names, generator, every leaf's
recipe, both necks' pyramids at every patch size, one training step per neck on a generated
toy COCO set, and the errors a neck/backbone mismatch gives."""
import functools
import math
import re
import runpy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpatch  # noqa: F401  (registers models, the optimizer constructor, datasets)
from mmpatch.models.backbones import patch_mamba, patch_vit

REPO = Path(__file__).resolve().parents[1]
GRIDS = {'toy_det': ('t', (16, 8, 4, 2)), 'toy_det_gpu': ('s', (16, 8, 4, 2, 1))}
LEAVES = sorted(p for grid in GRIDS for p in (REPO / 'configs' / grid).glob('*.py'))
NAME = re.compile(r'(?P<family>vit|adventurer)_(?P<arch>[ts])_p(?P<p>\d+)_(?P<neck>simple|multidepth)')
FAMILY_TYPES = {'vit': 'PatchViT', 'adventurer': 'PatchMamba'}
ARCH_PARSERS = {'PatchViT': patch_vit.parse_arch, 'PatchMamba': patch_mamba.parse_arch}
STRIDES = (4, 8, 16, 32, 64)
IMG = 128


@pytest.fixture(scope='module', autouse=True)
def mmdet_scope_and_fast_loading():
    """mmdet scope; mmengine re-reads mmdet's metafiles for every ``mmdet::`` base (slow):
    cache that lookup; tiny models: one thread (no contention on a shared CPU)."""
    init_default_scope('mmdet')
    original = Config._get_cfg_path
    external = functools.lru_cache(None)(lambda cfg_path: original(cfg_path, ''))

    def get_cfg_path(cfg_path, filename):  # an external path does not depend on its includer
        return external(cfg_path) if '::' in cfg_path else original(cfg_path, filename)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Config, '_get_cfg_path', staticmethod(get_cfg_path))
        yield
    torch.set_num_threads(threads)


@functools.lru_cache(None)
def load(rel_path):
    return Config.fromfile(str(REPO / rel_path))


def leaf(grid, family, p, neck):
    arch = GRIDS[grid][0]
    return load(f'configs/{grid}/{family}_{arch}_p{p}_{neck}.py')


def test_grid_names_and_generator_in_sync():
    names = {(p.parent.name, p.stem) for p in LEAVES}
    assert names == {(grid, f'{f}_{arch}_p{p}_{n}') for grid, (arch, sizes) in GRIDS.items()
                     for f in FAMILY_TYPES for p in sizes for n in ('simple', 'multidepth')}
    tool = runpy.run_path(str(REPO / 'tools' / 'misc' / 'make_toy_det_configs.py'),
                          run_name='tool_under_test')
    expected = tool['all_configs']()
    assert {k for k in expected if not k.startswith('_base_')} == \
        {f'{g}/{n}.py' for g, n in names}
    for rel, text in expected.items():
        path = REPO / 'configs' / rel
        assert path.is_file() and path.read_text() == text, \
            f'{rel}: run python tools/misc/make_toy_det_configs.py'
    assert tool['multidepth_indices'](12) == (2, 5, 8, 11, 11)
    assert tool['multidepth_indices'](4) == (0, 1, 2, 3, 3)


@pytest.mark.parametrize('path', LEAVES, ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_leaf_recipe(path):
    cfg = load(str(path.relative_to(REPO)))
    m = NAME.fullmatch(path.stem)
    p, gpu = int(m['p']), path.parent.name == 'toy_det_gpu'
    model, backbone, neck = cfg.model, cfg.model.backbone, cfg.model.neck
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmpatch'], allow_failed_imports=False)
    # backbone and neck agree with the name and with each other
    assert backbone.type == FAMILY_TYPES[m['family']]
    arch = ARCH_PARSERS[backbone.type](backbone.arch)
    assert (arch['embed_dims'], arch['num_layers']) == \
        ((384 if m['family'] == 'vit' else 512, 12) if gpu else (64, 4))
    assert backbone.patch_size == neck.in_stride == p and IMG % p == 0
    depth = arch['num_layers']
    expected_indices = ((depth - 1,) if m['neck'] == 'simple'
                        else tuple(depth * k // 4 - 1 for k in (1, 2, 3, 4)) + (depth - 1,))
    assert tuple(backbone.out_indices) == expected_indices
    assert list(neck.in_channels) == [arch['embed_dims']] * len(expected_indices)
    assert neck.type == 'PatchPyramidNeck' and tuple(neck.out_strides) == STRIDES
    assert backbone.with_cp == (gpu and p <= 2)
    # heads fit the neck and the 3..40 px objects: anchors of 4..128 px at strides 4..64
    width = neck.out_channels
    assert width == (256 if gpu else 64) == model.rpn_head.in_channels
    anchors = model.rpn_head.anchor_generator
    assert tuple(anchors.strides) == STRIDES and list(anchors.scales) == [1, 2]
    roi = model.roi_head
    assert roi.bbox_roi_extractor.out_channels == roi.mask_roi_extractor.out_channels == width
    assert list(roi.bbox_roi_extractor.featmap_strides) == list(STRIDES[:4])
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert roi.bbox_head.num_classes == roi.mask_head.num_classes == len(classes) == 6
    # data, metric and precision
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == 'data/toy_coco_128/'
    for ev in ('val_evaluator', 'test_evaluator'):
        assert cfg[ev].type == 'CocoMetric' and list(cfg[ev].metric) == ['bbox', 'segm']
        assert cfg[ev].ann_file == 'data/toy_coco_128/annotations/instances_val.json'
    assert cfg.train_dataloader.batch_size == (16 if gpu else 4)
    if gpu:
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'
    else:
        assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU: fp32
    assert cfg.train_cfg.max_iters == cfg.param_scheduler[-1].end
    assert cfg.default_hooks.checkpoint.interval == cfg.train_cfg.max_iters


def _neck(cfg, p):
    from mmdet.registry import MODELS
    neck_cfg = cfg.model.neck.copy()
    neck_cfg.in_stride = p
    return MODELS.build(neck_cfg)


@pytest.mark.parametrize('grid', GRIDS)
@pytest.mark.parametrize('neck', ['simple', 'multidepth'])
@pytest.mark.parametrize('p', [16, 8, 4, 2, 1])
def test_neck_pyramid_at_every_patch_size(grid, neck, p):
    """The necks of the real cells (in_stride set to p) on the maps of a 64x64 image: the
    pyramid at strides 4..64."""
    cfg = leaf(grid, 'vit', 16, neck)
    model = _neck(cfg, p).eval()
    channels, side = cfg.model.neck.in_channels, 64
    maps = [torch.randn(1, c, side // p, side // p) for c in channels]
    with torch.no_grad():
        outs = model(maps)
    assert [tuple(o.shape) for o in outs] == [
        (1, cfg.model.neck.out_channels, side // s, side // s) for s in STRIDES]
    if neck == 'multidepth':  # input i feeds level i only; the last block also feeds stride 64
        maps[0] = torch.zeros_like(maps[0])
        with torch.no_grad():
            changed = model(maps)
        assert not torch.equal(changed[0], outs[0])
        assert all(torch.equal(a, b) for a, b in zip(changed[1:], outs[1:]))


@pytest.mark.parametrize('family', ['vit', 'adventurer'])
@pytest.mark.parametrize('neck', ['simple', 'multidepth'])
def test_real_backbone_feeds_the_neck_at_every_patch_size(family, neck):
    """CPU cells' backbone + neck on a 32x32 image (p=1 stays cheap): maps at every stride."""
    from mmdet.registry import MODELS
    cfg = leaf('toy_det', family, 16, neck)
    for p in (16, 8, 4, 2, 1):
        backbone_cfg = cfg.model.backbone.copy()
        backbone_cfg.update(patch_size=p, img_size=32)
        backbone = MODELS.build(backbone_cfg).eval()
        with torch.no_grad():
            outs = _neck(cfg, p)(backbone(torch.randn(1, 3, 32, 32)))
        assert [tuple(o.shape[-2:]) for o in outs] == [(math.ceil(32 / s),) * 2 for s in STRIDES]


@pytest.fixture(scope='module')
def toy_coco_128(tmp_path_factory):
    """The grid's data at the grid's image size and object sizes, 4 train + 1 val images."""
    from mmpatch.datasets.toy_scenes import write_toy_coco
    root = tmp_path_factory.mktemp('toy') / 'toy_coco_128'
    write_toy_coco(str(root), num_train=4, num_val=1, img_size=IMG, min_object_size=3,
                   max_object_size=40, seed=0)
    return root


@pytest.mark.parametrize('neck', ['simple', 'multidepth'])
def test_one_training_step_per_neck(neck, toy_coco_128):
    """One optimizer step of the real CPU cell (p16, its optimizer constructor) on generated
    toy data through the config's pipeline: finite losses, every backbone parameter updated."""
    from mmdet.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    cfg = leaf('toy_det', 'vit', 16, neck)
    dataset_cfg = cfg.train_dataloader.dataset.copy()
    dataset_cfg.data_root = str(toy_coco_128)
    dataset = DATASETS.build(dataset_cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = pseudo_collate([dataset[0], dataset[1]])
    assert all(len(s.gt_instances) > 5 for s in data['data_samples'])
    before = [p.detach().clone() for p in model.backbone.parameters()]
    losses = model.train_step(data, optim_wrapper)
    for name in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        value = losses[name]
        assert torch.isfinite(value) and value > 0, (name, value)
    moved = [not torch.equal(a, b.detach()) for a, b in zip(before, model.backbone.parameters())]
    assert all(moved), 'every backbone parameter takes a step'


def test_neck_and_backbone_mismatches_name_the_fix():
    from mmdet.registry import MODELS
    cfg = leaf('toy_det', 'vit', 16, 'multidepth')
    neck_cfg = cfg.model.neck.copy()
    neck_cfg.in_channels = [64, 64, 64]
    with pytest.raises(ValueError, match='3 inputs for 5 output levels: give one input'):
        MODELS.build(neck_cfg)
    # a backbone giving 4 maps to a neck built for 5: the neck says what to match
    model_cfg = cfg.model.copy()
    model_cfg.backbone.out_indices = (0, 1, 2, 3)
    model = MODELS.build(model_cfg)
    with pytest.raises(ValueError, match=r"built for 5 input map\(s\).*but got 4; match "
                                         r"in_channels to the backbone's out_indices"):
        model.extract_feat(torch.randn(1, 3, 64, 64))
