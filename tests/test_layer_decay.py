"""LayerDecayOptimWrapperConstructor: decay rule alone, param groups, registries, real backbones."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmpatch.models  # noqa: F401  (registers the models)
from mmpatch.engine.layer_decay_optim_constructor import is_no_decay, layer_decay_lr_scale
from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.backbones.patch_vit import PatchViT

LR, WD = 1e-3, 0.05


class DummyBackbone(nn.Module):
    """Embeddings, ``num_layers`` blocks and a final norm, ranked as in the backbone contract."""

    def __init__(self, num_layers=3, dims=4):
        super().__init__()
        self.num_layers = num_layers
        self.patch_embed = nn.Conv2d(3, dims, 2, 2)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, dims))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.blocks = nn.ModuleList(nn.Linear(dims, dims) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dims)

    def get_layer_depth(self, param_name, prefix=''):
        num_depths = self.num_layers + 2
        name = param_name[len(prefix):]
        if name.split('.')[0] in ('patch_embed', 'pos_embed', 'cls_token'):
            return 0, num_depths
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths


class Segmentor(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.decode_head = nn.Conv2d(4, 3, 1)


def optim_cfg(rate=0.5, constructor='LayerDecayOptimWrapperConstructor', **paramwise):
    return dict(type='OptimWrapper', constructor=constructor,
                optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
                paramwise_cfg=dict(layer_decay_rate=rate, **paramwise))


def group_of(optimizer, param):
    groups = [g for g in optimizer.param_groups if any(p is param for p in g['params'])]
    assert len(groups) == 1, 'every parameter is in exactly one group'
    return groups[0]


def test_decay_rule_alone():
    assert layer_decay_lr_scale(13, 14, 0.65) == 1.0  # final norm: base lr
    assert layer_decay_lr_scale(12, 14, 0.65) == pytest.approx(0.65)  # last block
    assert layer_decay_lr_scale(0, 14, 0.9) == pytest.approx(0.9 ** 13)  # embeddings
    assert layer_decay_lr_scale(5, 14, 1.0) == 1.0
    with pytest.raises(ValueError, match='outside'):
        layer_decay_lr_scale(14, 14, 0.9)


def test_no_decay_rule_alone():
    assert is_no_decay('backbone.blocks.0.norm1.weight', torch.zeros(8))
    assert is_no_decay('decode_head.conv_seg.bias', torch.zeros(3))
    assert is_no_decay('backbone.pos_embed', torch.zeros(1, 5, 8))
    assert not is_no_decay('backbone.pos_embed', torch.zeros(1, 5, 8), no_decay_names=())
    assert not is_no_decay('backbone.pos_embed_proj.weight', torch.zeros(4, 4))
    assert not is_no_decay('backbone.blocks.0.attn.qkv.weight', torch.zeros(4, 4))


def test_groups_on_a_dummy_backbone():
    model = Segmentor(DummyBackbone(num_layers=3))
    opt = build_optim_wrapper(model, optim_cfg(rate=0.5)).optimizer
    bb = model.backbone
    expected = {  # param -> (lr scale, weight decay); num_depths = 5
        bb.patch_embed.weight: (0.5 ** 4, WD), bb.patch_embed.bias: (0.5 ** 4, 0.),
        bb.pos_embed: (0.5 ** 4, 0.), bb.cls_token: (0.5 ** 4, 0.),
        bb.blocks[0].weight: (0.5 ** 3, WD), bb.blocks[2].weight: (0.5, WD),
        bb.blocks[2].bias: (0.5, 0.), bb.norm.weight: (1., 0.),
        model.decode_head.weight: (1., WD), model.decode_head.bias: (1., 0.)}
    for param, (scale, wd) in expected.items():
        group = group_of(opt, param)
        assert group['lr'] == pytest.approx(LR * scale) and group['weight_decay'] == wd
    assert sum(len(g['params']) for g in opt.param_groups) == len(list(model.parameters()))


def test_head_lr_mult_scales_the_heads_only():
    model = Segmentor(DummyBackbone(num_layers=3))
    model.neck = nn.Conv2d(4, 4, 1)
    model.auxiliary_head = nn.Conv2d(4, 3, 1)
    opt = build_optim_wrapper(model, optim_cfg(rate=0.5, head_lr_mult=10.)).optimizer
    for param in (model.decode_head.weight, model.decode_head.bias, model.auxiliary_head.weight):
        assert group_of(opt, param)['lr'] == pytest.approx(LR * 10)
    assert group_of(opt, model.neck.weight)['lr'] == pytest.approx(LR)
    assert group_of(opt, model.backbone.norm.weight)['lr'] == pytest.approx(LR)
    assert group_of(opt, model.backbone.blocks[2].weight)['lr'] == pytest.approx(LR * 0.5)
    for mult in (0, -1., True, '10'):
        with pytest.raises(ValueError, match='head_lr_mult must be a positive number'):
            build_optim_wrapper(Segmentor(DummyBackbone()), optim_cfg(head_lr_mult=mult))


def test_frozen_params_are_left_out_and_custom_no_decay_names():
    model = Segmentor(DummyBackbone())
    model.backbone.blocks[0].weight.requires_grad_(False)
    opt = build_optim_wrapper(model, optim_cfg(no_decay_names=['cls_token'])).optimizer
    params = [p for g in opt.param_groups for p in g['params']]
    assert not any(p is model.backbone.blocks[0].weight for p in params)
    assert group_of(opt, model.backbone.pos_embed)['weight_decay'] == WD
    assert group_of(opt, model.backbone.cls_token)['weight_decay'] == 0.


def test_shared_parameters_need_bypass_duplicate():
    model = Segmentor(DummyBackbone())
    model.aux = model.decode_head  # the same module twice
    with pytest.raises(ValueError, match='bypass_duplicate=True'):
        build_optim_wrapper(model, optim_cfg())
    opt = build_optim_wrapper(model, optim_cfg(bypass_duplicate=True)).optimizer
    assert sum(len(g['params']) for g in opt.param_groups) == len(list(model.parameters()))


def test_bad_inputs_raise():
    class NoDepth(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(Segmentor(NoDepth()), optim_cfg())
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(nn.Linear(2, 2), optim_cfg())  # no backbone at all
    for rate in (0, 1.5, '0.9'):
        with pytest.raises(ValueError, match='layer_decay_rate must be a number'):
            build_optim_wrapper(Segmentor(DummyBackbone()), optim_cfg(rate=rate))
    with pytest.raises(ValueError, match='not supported with layer_decay_rate'):
        build_optim_wrapper(Segmentor(DummyBackbone()), optim_cfg(norm_decay_mult=0.))


def test_without_layer_decay_it_is_the_default_constructor():
    model = Segmentor(DummyBackbone())
    cfg = optim_cfg()
    cfg['paramwise_cfg'] = dict(custom_keys={'decode_head': dict(lr_mult=10.)})
    opt = build_optim_wrapper(model, cfg).optimizer
    assert group_of(opt, model.decode_head.weight)['lr'] == pytest.approx(LR * 10)
    assert group_of(opt, model.backbone.blocks[0].weight)['lr'] == LR


@pytest.mark.parametrize('scope', ('mmseg', 'mmdet'))
def test_found_from_mmseg_and_mmdet_scopes(scope):
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(Segmentor(DummyBackbone()), optim_cfg())
    assert len({g['lr'] for g in wrapper.optimizer.param_groups}) == 5


@pytest.mark.parametrize('backbone_cls,blocks', ((PatchViT, 'blocks'), (PatchMamba, 'layers')))
def test_real_backbones(backbone_cls, blocks):
    num_layers, rate = 3, 0.9
    backbone = backbone_cls(arch=dict(embed_dims=64, num_layers=num_layers, **(
        dict(num_heads=2) if backbone_cls is PatchViT else dict(headdim=32, d_state=16))),
        patch_size=4, img_size=32)
    model = Segmentor(backbone)
    opt = build_optim_wrapper(model, optim_cfg(rate=rate)).optimizer
    num_depths = num_layers + 2
    layer = getattr(backbone, blocks)
    first_weight = lambda m: next(p for p in m.parameters() if p.ndim > 1)  # noqa: E731
    checks = {
        backbone.patch_embed.proj.weight: rate ** (num_depths - 1),
        backbone.pos_embed: rate ** (num_depths - 1),
        first_weight(layer[1]): rate ** (num_depths - 1 - 2),  # middle block
        first_weight(layer[-1]): rate,  # last block
        model.decode_head.weight: 1.}
    for param, scale in checks.items():
        assert group_of(opt, param)['lr'] == pytest.approx(LR * scale)
    assert group_of(opt, backbone.pos_embed)['weight_decay'] == 0.
    assert group_of(opt, backbone.cls_token)['weight_decay'] == 0.
    assert group_of(opt, first_weight(layer[-1]))['weight_decay'] == WD
    assert sum(len(g['params']) for g in opt.param_groups) == len(list(model.parameters()))
