"""PatchPyramidNeck: resampling plans, shapes/strides/channels at any patch size, registries."""
import math

import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS

import mmpatch.models  # noqa: F401  (registers the models)
from mmpatch.models.necks.patch_pyramid_neck import (PatchPyramidNeck, plan_resampling,
                                                     resampled_size)

IMG = 64
PATCH_SIZES = (1, 2, 4, 6, 8, 12, 16, 32)


def backbone_map(patch_size, channels=16, batch=2, img=IMG):
    """A plain backbone's map for an ``img`` x ``img`` input: (B, C, ceil(H/p), ceil(W/p))."""
    side = math.ceil(img / patch_size)
    return torch.randn(batch, channels, side, side)


def net_factor(plan):
    """Scale factor of the learned steps of a plan (resize excluded)."""
    return 2.0 ** (plan.count('up2') - plan.count('down2'))


@pytest.mark.parametrize('in_stride', range(1, 33))
@pytest.mark.parametrize('out_stride', (1, 4, 8, 16, 32, 64))
def test_plan_resampling_reaches_the_target_stride(in_stride, out_stride):
    plan = plan_resampling(in_stride, out_stride)
    assert not ('up2' in plan and 'down2' in plan)
    ratio = in_stride / out_stride
    learned = net_factor(plan)
    if 'resize' in plan:
        assert plan[-1] == 'resize' and plan.count('resize') == 1
        assert math.log2(ratio) != int(math.log2(ratio))  # only for non-powers of two
        remainder = ratio / learned  # what the bilinear resize does
        assert 1 < remainder < 2 or 0.5 < remainder < 1
        assert (remainder > 1) == (in_stride > out_stride)  # same direction as the steps
    else:
        assert learned == ratio


def test_plan_resampling_examples_and_bad_input():
    assert plan_resampling(16, 4) == ('up2', 'up2')
    assert plan_resampling(4, 4) == ()
    assert plan_resampling(1, 32) == ('down2',) * 5
    assert plan_resampling(6, 4) == ('resize',)
    assert plan_resampling(12, 4) == ('up2', 'resize')
    assert plan_resampling(6, 32) == ('down2', 'down2', 'resize')
    for bad in (0, -4, 2.0, '4', None, True):
        with pytest.raises(ValueError, match='in_stride must be a positive integer'):
            plan_resampling(bad, 4)
    with pytest.raises(ValueError, match='out_stride'):
        plan_resampling(4, 0)


def test_resampled_size_matches_learned_steps_on_odd_sides():
    assert resampled_size(7, 4, 8) == 4  # ceil(7 / 2), as a padded stride-2 conv
    assert resampled_size(7, 16, 4) == 28
    assert resampled_size(11, 6, 4) == 17  # ceil(16.5)


@pytest.mark.parametrize('patch_size', PATCH_SIZES)
@pytest.mark.parametrize('out_channels', (None, 24))
def test_output_shapes_strides_channels(patch_size, out_channels):
    out_strides = (4, 8, 16, 32)
    neck = PatchPyramidNeck(16, patch_size, out_strides, out_channels=out_channels)
    x = backbone_map(patch_size)
    outs = neck((x,))
    assert isinstance(outs, tuple) and len(outs) == len(out_strides)
    h = x.shape[-1]
    for out, stride in zip(outs, out_strides):
        side = math.ceil(h * patch_size / stride)
        assert out.shape == (2, out_channels or 16, side, side)
        if IMG % patch_size == 0:
            assert side == IMG // stride  # a real stride-s map of the image
    assert all(o.isfinite().all() for o in outs)


@pytest.mark.parametrize('downsample', ('conv', 'pool'))
def test_odd_token_grid_and_downsample_modes(downsample):
    neck = PatchPyramidNeck(8, 2, (2, 4, 8, 64), downsample=downsample)
    outs = neck((torch.randn(1, 8, 7, 5),))
    assert [tuple(o.shape[-2:]) for o in outs] == [(7, 5), (4, 3), (2, 2), (1, 1)]
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in neck.modules())
    assert (n_conv > 0) == (downsample == 'conv')
    if downsample == 'pool':  # pooled levels are parameter-free
        assert sum(p.numel() for p in neck.parameters()) == 0


def test_detection_strides_and_vitdet_channel_halving():
    neck = PatchPyramidNeck(32, 16, (4, 8, 16, 32, 64), out_channels=8)
    ups = [m for m in neck.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in ups] == [(32, 16), (16, 8)]  # one shared chain
    outs = neck((backbone_map(16, channels=32),))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    assert {o.shape[1] for o in outs} == {8}
    # without output convs, levels keep the input width
    keep = PatchPyramidNeck(32, 16, (4, 8), out_channels=None)
    assert {o.shape[1] for o in keep((backbone_map(16, channels=32),))} == {32}


def count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize('out_strides', ((4, 8, 16, 32, 64), (64, 4, 32, 8, 16)))
def test_one_input_shares_its_steps_across_levels(out_strides):
    # p=1 to strides 4..64: 2 + 3 + 4 + 5 + 6 steps if separate, 6 when shared
    neck = PatchPyramidNeck(8, 1, out_strides, out_channels=8)
    assert count(neck, torch.nn.Conv2d) - 2 * len(out_strides) == 6  # minus 1x1 + 3x3 per level
    # several inputs: each level has its own steps
    multi = PatchPyramidNeck([8] * 5, 1, out_strides)
    assert count(multi, torch.nn.Conv2d) == 2 + 3 + 4 + 5 + 6
    outs = neck((backbone_map(1, channels=8, batch=1),))
    assert [o.shape[-1] for o in outs] == [IMG // s for s in out_strides]


def test_gradients_reach_the_input_through_every_level():
    neck = PatchPyramidNeck(8, 6, (4, 8, 16, 32), out_channels=8)
    x = backbone_map(6, channels=8).requires_grad_()
    for out in neck((x,)):
        grad, = torch.autograd.grad(out.square().sum(), x, retain_graph=True)
        assert grad.abs().sum() > 0


def test_several_inputs_feed_one_level_each():
    neck = PatchPyramidNeck([8, 12, 16, 20], 4, (4, 8, 16, 32))
    maps = [backbone_map(4, channels=c, batch=1) for c in (8, 12, 16, 20)]
    outs = neck(maps)
    assert [o.shape[1] for o in outs] == [8, 12, 16, 20]
    assert torch.equal(outs[0], maps[0])  # stride 4 -> 4 is the identity
    with pytest.raises(ValueError, match='built for 4 input'):
        neck(maps[:1])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match='one per level'):
        PatchPyramidNeck([8, 8], 16, (4, 8, 16))
    with pytest.raises(ValueError, match='in_stride must be a positive integer'):
        PatchPyramidNeck(8, 0)
    with pytest.raises(ValueError, match='downsample'):
        PatchPyramidNeck(8, 4, downsample='avg')
    with pytest.raises(ValueError, match='halve_up_channels=True needs out_channels'):
        PatchPyramidNeck(8, 16, halve_up_channels=True)
    with pytest.raises(ValueError, match='in_channels'):
        PatchPyramidNeck(0, 16)


@pytest.mark.parametrize('registry,scope', ((SEG_MODELS, 'mmseg'), (DET_MODELS, 'mmdet')))
def test_built_from_seg_and_det_registries(registry, scope):
    cfg = dict(type='PatchPyramidNeck', in_channels=16, in_stride=2,
               out_strides=(4, 8, 16, 32, 64), out_channels=8)
    with DefaultScope.overwrite_default_scope(scope):
        neck = registry.build(cfg)
    assert isinstance(neck, PatchPyramidNeck)
    assert any(type(m).__name__ == 'LayerNorm2d' for m in neck.modules())
    outs = neck((backbone_map(2),))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]


@pytest.mark.parametrize('backbone_type', ('PatchViT', 'PatchMamba'))
@pytest.mark.parametrize('patch_size', (1, 6, 16))
def test_on_real_backbones_with_one_block_per_level(backbone_type, patch_size):
    arch = dict(embed_dims=32, num_layers=4,
                **(dict(num_heads=2) if backbone_type == 'PatchViT' else dict(headdim=16)))
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = SEG_MODELS.build(dict(type=backbone_type, arch=arch, patch_size=patch_size,
                                         img_size=32, out_indices=(0, 1, 2, 3))).eval()
        neck = SEG_MODELS.build(dict(type='PatchPyramidNeck', in_channels=[32] * 4,
                                     in_stride=patch_size, out_channels=16)).eval()
    with torch.no_grad():
        outs = neck(backbone(torch.randn(1, 3, 32, 32)))
    grid = math.ceil(32 / patch_size)
    assert [o.shape[-1] for o in outs] == [math.ceil(grid * patch_size / s) for s in (4, 8, 16, 32)]
    if 32 % patch_size == 0:
        assert [o.shape[-1] for o in outs] == [8, 4, 2, 1]  # the image's stride-s maps
    assert {o.shape[1] for o in outs} == {16}
