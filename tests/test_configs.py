"""Every ADE20K and toy segmentation config: consistent with its name, builds, and runs forward.

Each config is loaded as committed; its backbone is then shrunk (embed 32, 2 blocks, same
patch size, same out_indices count) and the neck/head widths follow, so that all models
build and run one forward on a 64x64 input on CPU in a few seconds.
"""
import functools
import math
import re
import runpy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import mmpatch  # noqa: F401  (registers models, engine and datasets)
from mmpatch.models.backbones import patch_mamba, patch_vit

REPO = Path(__file__).resolve().parents[1]
ADE_CONFIGS = sorted((REPO / 'configs' / 'ade20k').glob('*.py'))
TOY_CONFIGS = sorted(p for p in (REPO / 'configs' / 'toy').glob('*_t_p*_*.py')
                     if re.fullmatch(r'(vit|adventurer)_t_p\d+_(linear|upernet)', p.stem))
TOY_GPU_CONFIGS = sorted((REPO / 'configs' / 'toy_gpu').glob('*.py'))
ARCH_DIMS = {'PatchViT': patch_vit.ARCH_SETTINGS, 'PatchMamba': patch_mamba.ARCH_SETTINGS}
ARCH_NAMES = {'t': 'tiny', 's': 'small', 'b': 'base'}
FAMILY_TYPES = {'vit': 'PatchViT', 'adventurer': 'PatchMamba'}
TINY_DIMS, TINY_LAYERS = 32, 2
TINY_ARCH = {
    'PatchViT': dict(_delete_=True, embed_dims=TINY_DIMS, num_layers=TINY_LAYERS, num_heads=2),
    'PatchMamba': dict(_delete_=True, embed_dims=TINY_DIMS, num_layers=TINY_LAYERS, headdim=16,
                       d_state=8, chunk_size=64),
}


@pytest.fixture(scope='module', autouse=True)
def fast_config_loading():
    """mmengine re-reads mmseg's metafiles (~0.5 s) per ``mmseg::`` base: cache the lookup."""
    original = Config._get_cfg_path
    external = functools.lru_cache(None)(lambda cfg_path: original(cfg_path, ''))

    def get_cfg_path(cfg_path, filename):  # an external path does not depend on its includer
        return external(cfg_path) if '::' in cfg_path else original(cfg_path, filename)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared CPU
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Config, '_get_cfg_path', staticmethod(get_cfg_path))
        yield
    torch.set_num_threads(threads)


def name_fields(path):
    """'vit_b_p16_upernet.py' -> ('vit', 'b', 16, 'upernet')."""
    family, arch, p, decoder = path.stem.split('_')
    return family, arch, int(p[1:]), decoder


def as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def test_there_are_60_ade20k_and_16_toy_and_16_gpu_toy_configs():
    assert len(ADE_CONFIGS) == 60 and len(TOY_CONFIGS) == 16 and len(TOY_GPU_CONFIGS) == 16
    assert {name_fields(p) for p in TOY_GPU_CONFIGS} == {
        (f, 's', p, d) for f in FAMILY_TYPES for p in (8, 4, 2, 1) for d in ('linear', 'upernet')}
    cells = {name_fields(p) for p in ADE_CONFIGS}
    assert cells == {(f, a, p, d) for f in FAMILY_TYPES for a in ARCH_NAMES
                     for p in (16, 8, 4, 2, 1) for d in ('linear', 'upernet')}


def test_configs_match_their_generator():
    tool = runpy.run_path(str(REPO / 'tools' / 'misc' / 'make_ade20k_configs.py'),
                          run_name='tool_under_test')
    expected = tool['all_configs']()
    for path in ADE_CONFIGS + TOY_CONFIGS + TOY_GPU_CONFIGS:
        rel = str(path.relative_to(REPO / 'configs'))
        assert path.read_text() == expected[rel], f'{rel}: run tools/misc/make_ade20k_configs.py'


def test_mission_config_is_vit_b_p1_linear():
    cfg = Config.fromfile(REPO / 'configs' / 'ade20k' / 'vit_b_p1_linear.py')
    m = cfg.model
    assert (m.backbone.type, m.backbone.arch, m.backbone.patch_size) == ('PatchViT', 'base', 1)
    assert m.decode_head.type == 'LinearHead' and 'neck' not in m and 'auxiliary_head' not in m
    assert m.backbone.with_cp and cfg.train_dataloader.batch_size == 2
    assert cfg.optim_wrapper.optimizer.lr == 5e-5 and cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.train_cfg.max_iters == 160000 and cfg.default_scope == 'mmseg'
    # full-size model: ViT-B + the paper's ~0.1M linear decoder
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    head = sum(p.numel() for p in model.decode_head.parameters())
    assert head == 768 * 150 + 150 + 2 * 768
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert 85e6 < backbone < 90e6  # ViT-B blocks (85M) + 1x1 patch embed + 64x64 position grid


@pytest.mark.parametrize('path', ADE_CONFIGS, ids=lambda p: p.stem)
def test_ade20k_config_is_consistent_with_its_name(path):
    family, arch, p, decoder = name_fields(path)
    cfg = Config.fromfile(path)
    m = cfg.model
    bb = m.backbone
    dims = ARCH_DIMS[bb.type][ARCH_NAMES[arch]]['embed_dims']
    assert bb.type == FAMILY_TYPES[family] and bb.arch == ARCH_NAMES[arch]
    assert bb.patch_size == p and bb.img_size == 512 and bb.with_cp == (p <= 4)
    assert m.decode_head.num_classes == 150
    assert m.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    assert cfg.train_dataloader.batch_size == 2 and cfg.crop_size == (512, 512)
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    if decoder == 'linear':
        assert m.decode_head.type == 'LinearHead' and m.decode_head.in_channels == dims
        assert 'neck' not in m and bb.out_indices == -1
    else:
        levels = len(bb.out_indices)
        assert m.neck.type == 'PatchPyramidNeck' and m.neck.in_stride == p
        assert m.neck.in_channels == [dims] * levels == m.decode_head.in_channels
        assert m.auxiliary_head.in_channels == dims and m.decode_head.type == 'UPerHead'


def shrink(cfg):
    """Tiny backbone (same type, patch size, number of outputs), widths to match, 64 px."""
    m = cfg.model
    bb = m.backbone
    num_outs = len(as_list(bb.out_indices))
    cfg.merge_from_dict(dict(model=dict(backbone=dict(
        arch=dict(TINY_ARCH[bb.type]), img_size=64, init_cfg=None,
        out_indices=tuple(j * TINY_LAYERS // num_outs for j in range(num_outs))))))
    if 'neck' in m and m.neck is not None:
        m.neck.in_channels = [TINY_DIMS] * num_outs
    heads = [m.decode_head] + ([m.auxiliary_head] if m.get('auxiliary_head') else [])
    for head in heads:
        head.in_channels = ([TINY_DIMS] * len(head.in_channels)
                            if isinstance(head.in_channels, list) else TINY_DIMS)
        if head.type != 'LinearHead':
            head.channels = 16
    return cfg


@pytest.mark.parametrize('path', ADE_CONFIGS + TOY_CONFIGS + TOY_GPU_CONFIGS,
                         ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_config_builds_and_runs_forward(path):
    cfg = shrink(Config.fromfile(path))
    p = cfg.model.backbone.patch_size
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model).eval()
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(inputs, mode='tensor')
    stride = p if 'neck' not in cfg.model else 4  # linear: stride p; UperNet: finest level
    side = math.ceil(64 / stride)
    assert logits.shape == (1, cfg.model.decode_head.num_classes, side, side)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('path', TOY_GPU_CONFIGS, ids=lambda p: p.stem)
def test_gpu_toy_config_is_consistent_with_its_name(path):
    family, arch, p, decoder = name_fields(path)
    cfg = Config.fromfile(path)
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.patch_size) == (FAMILY_TYPES[family], ARCH_NAMES[arch], p)
    assert cfg.model.decode_head.type == {'linear': 'LinearHead', 'upernet': 'UPerHead'}[decoder]
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.test_cfg.type == 'AmpTestLoop'
    assert cfg.train_dataloader.dataset.data_root == 'data/toy_seg_128'
