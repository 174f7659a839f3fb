"""PatchViT: timm parity, any patch size, fused attention, checkpoint loading, registry."""
import math
import runpy
from pathlib import Path

import pytest
import torch
from timm.layers import resample_patch_embed
from timm.models.vision_transformer import VisionTransformer
from torch.utils._python_dispatch import TorchDispatchMode

import mmpatch.models  # noqa: F401  (registers the models)
from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.layers.pos_embed import resample_grid_pos_embed
from mmpatch.models.weights.checkpoint_filter import CheckpointMismatchError

REPO = Path(__file__).resolve().parents[1]
MICRO = dict(embed_dims=32, num_layers=2, num_heads=2)  # a 2-block model for fast tests


def load_tool(relative_path):
    """Namespace of a script under tools/ (tools/ is not a package)."""
    return runpy.run_path(str(REPO / relative_path), run_name='tool_under_test')


def save(obj, path):
    torch.save(obj, path)
    return str(path)


def timm_tiny(img_size=48, **kwargs):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=img_size, patch_size=16, embed_dim=192, depth=12,
                              num_heads=3, class_token=True, **kwargs)
    # timm inits the final norm to (1, 0): perturb it so the parity test also checks it.
    with torch.no_grad():
        for p in (model.norm if isinstance(model.norm, torch.nn.LayerNorm) else model.fc_norm).parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def timm_feature_maps(model, x):
    tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
    h, w = (math.ceil(s / 16) for s in x.shape[-2:])
    return tokens.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)


def test_matches_timm_features(tmp_path):
    ref = timm_tiny(num_classes=5)  # a classifier head, which loading drops
    ckpt = save({'model': ref.state_dict()}, tmp_path / 'timm.pth')  # DeiT-style wrapper
    ours = PatchViT(arch='tiny', patch_size=16, img_size=48,
                    init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    ours.init_weights()
    ours.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        diff = (ours(x)[0] - timm_feature_maps(ref, x)).abs().max().item()
    assert diff < 1e-5

    # The converter writes an mmpatch checkpoint through the same conversion.
    converted = tmp_path / 'mmpatch.pth'
    load_tool('tools/model_converters/vit_timm_to_mmpatch.py')['main']([ckpt, str(converted)])
    again = PatchViT(arch='tiny', patch_size=16, img_size=48,
                     init_cfg=dict(type='Pretrained', checkpoint=str(converted)))
    again.init_weights()
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x)[0], ours(x)[0])


def test_global_pool_and_distilled_checkpoints_load(tmp_path):
    ref = timm_tiny(img_size=32, global_pool='avg', num_classes=0)  # final LN is fc_norm
    state = ref.state_dict()
    assert 'fc_norm.weight' in state and 'norm.weight' not in state
    ours = PatchViT(arch='tiny', patch_size=16, img_size=32,
                    init_cfg=dict(type='Pretrained', checkpoint=save(state, tmp_path / 'gap.pth')))
    ours.init_weights()
    assert torch.equal(ours.norm.weight, state['fc_norm.weight'])

    # DeiT distilled: a dist token with its own position slot, and a second head.
    state = dict(ours.state_dict())
    dist_pos = torch.randn(1, 1, 192)
    state['pos_embed'] = torch.cat([state['pos_embed'][:, :1], dist_pos, state['pos_embed'][:, 1:]], 1)
    state.update({'dist_token': torch.randn(1, 1, 192), 'head_dist.weight': torch.randn(10, 192),
                  'head_dist.bias': torch.randn(10)})
    distilled = PatchViT(arch='tiny', patch_size=16, img_size=32, init_cfg=dict(
        type='Pretrained', checkpoint=save(state, tmp_path / 'deit_distilled.pth')))
    distilled.init_weights()
    assert torch.equal(distilled.pos_embed, ours.pos_embed)


@pytest.mark.parametrize('patch_size', [1, 2, 4, 8, 16, 32])
def test_any_patch_size_forward_backward(patch_size):
    model = PatchViT(arch=MICRO, patch_size=patch_size, img_size=32, out_indices=(0, -1),
                     drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 37, 45)  # non-square, not divisible by any p > 1
    outs = model(x)
    grid = (math.ceil(37 / patch_size), math.ceil(45 / patch_size))
    assert [o.shape for o in outs] == [(2, 32, *grid)] * 2
    sum(o.square().mean() for o in outs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_pos_table_capped_and_resampled_at_run_time():
    model = PatchViT(arch=MICRO, patch_size=1, img_size=512, with_cls_token=False)
    assert model.pos_grid == (64, 64) and model.pos_embed.shape == (1, 64 * 64, 32)
    for size in ((20, 28), (70, 66)):  # smaller and larger grids than the stored one
        assert model(torch.randn(1, 3, *size))[0].shape == (1, 32, *size)


class LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op (forward or backward) outputs."""

    def __init__(self):
        super().__init__()
        self.largest, self.ops = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_attention_never_materialises_n_by_n():
    model = PatchViT(arch=dict(embed_dims=64, num_layers=1, num_heads=2), patch_size=1,
                     img_size=32).train()
    x = torch.randn(1, 3, 32, 32)
    n = 1 + 32 * 32  # tokens, cls included: N x N exceeds every other tensor here
    with LargestOutput() as probe:
        model(x)[0].mean().backward()
    assert any('scaled_dot_product' in op for op in probe.ops), probe.ops
    assert probe.largest < n * n

    # The probe does see an explicit attention matrix.
    q = torch.randn(1, 2, n, 32)
    with LargestOutput() as probe:
        (q @ q.transpose(-2, -1)).softmax(-1)
    assert probe.largest >= n * n


def micro_checkpoint(tmp_path, patch_size=16, arch=MICRO, prefix='backbone.'):
    torch.manual_seed(1)
    src = PatchViT(arch=arch, patch_size=patch_size, img_size=32)
    state = {prefix + k: v for k, v in src.state_dict().items()}
    return src, save({'state_dict': state, 'meta': {}}, tmp_path / 'src.pth')


@pytest.mark.parametrize('patch_size', [8, 4])
def test_load_p16_checkpoint_into_smaller_patch(tmp_path, patch_size):
    src, path = micro_checkpoint(tmp_path)
    model = PatchViT(arch=MICRO, patch_size=patch_size, img_size=32, init_cfg=dict(
        type='Pretrained', checkpoint=path, prefix='backbone.'))
    model.init_weights()
    assert model.is_init
    got, ref = model.state_dict(), src.state_dict()
    assert torch.equal(got['patch_embed.proj.weight'],
                       resample_patch_embed(ref['patch_embed.proj.weight'], [patch_size] * 2))
    assert torch.equal(got['pos_embed'], resample_grid_pos_embed(
        ref['pos_embed'], model.pos_grid, src.pos_grid, num_prefix=1))
    for key in ref:
        if key not in ('patch_embed.proj.weight', 'pos_embed'):
            assert torch.equal(got[key], ref[key]), key
    assert model(torch.randn(1, 3, 32, 32))[0].shape == (1, 32, 32 // patch_size, 32 // patch_size)


def test_pretrained_inside_a_parent_module_and_without_cls_or_norm(tmp_path):
    from mmengine.model import BaseModule
    src, path = micro_checkpoint(tmp_path)

    class Parent(BaseModule):  # the mmengine init flow of a segmentor / detector
        def __init__(self):
            super().__init__()
            self.backbone = PatchViT(
                arch=MICRO, patch_size=16, img_size=32, with_cls_token=False, final_norm=False,
                init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))

    parent = Parent()
    parent.init_weights()
    backbone = parent.backbone
    assert backbone.is_init and backbone.cls_token is None and backbone.norm is None
    assert torch.equal(backbone.pos_embed, src.pos_embed[:, 1:])  # cls slot dropped
    assert torch.equal(backbone.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_converter_resamples_to_new_patch_size(tmp_path):
    src = PatchViT(arch=MICRO, patch_size=16, img_size=64)
    path = save(src.state_dict(), tmp_path / 'p16.pth')
    dst = tmp_path / 'p4.pth'
    load_tool('tools/model_converters/vit_timm_to_mmpatch.py')['main'](
        [path, str(dst), '--patch-size', '4', '--img-size', '32'])
    state = torch.load(dst)['state_dict']
    assert state['patch_embed.proj.weight'].shape == (32, 3, 4, 4)
    assert state['pos_embed'].shape == (1, 1 + 8 * 8, 32)
    model = PatchViT(arch=MICRO, patch_size=4, img_size=32,
                     init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert torch.equal(model.pos_embed, state['pos_embed'])


def test_mismatched_checkpoints_fail_listing_keys(tmp_path):
    _, wide = micro_checkpoint(tmp_path, arch=dict(MICRO, embed_dims=48))
    model = PatchViT(arch=MICRO, patch_size=16, img_size=32,
                     init_cfg=dict(type='Pretrained', checkpoint=wide, prefix='backbone.'))
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*blocks\.0\.attn\.qkv\.weight'):
        model.init_weights()

    state = PatchViT(arch=MICRO, patch_size=16, img_size=32).state_dict()
    del state['blocks.1.mlp.fc2.bias']
    state['blocks.2.norm1.weight'] = torch.ones(32)
    model.init_cfg = dict(type='Pretrained', checkpoint=save(state, tmp_path / 'bad.pth'))
    with pytest.raises(CheckpointMismatchError) as err:
        model.init_weights()
    assert 'missing (1): blocks.1.mlp.fc2.bias' in str(err.value)
    assert 'unexpected (1): blocks.2.norm1.weight' in str(err.value)

    model.init_cfg = dict(type='Pretrained', checkpoint=wide, prefix='neck.')
    with pytest.raises(KeyError, match='prefix'):
        model.init_weights()


def test_get_layer_depth_ranks():
    model = PatchViT(arch=dict(MICRO, num_layers=3), patch_size=8, img_size=32)
    depths = {name: model.get_layer_depth('backbone.' + name, 'backbone.')
              for name, _ in model.named_parameters()}
    assert {n for _, n in depths.values()} == {5}
    assert depths['patch_embed.proj.weight'][0] == depths['cls_token'][0] == depths['pos_embed'][0] == 0
    block_depths = [depths[f'blocks.{i}.attn.qkv.weight'][0] for i in range(3)]
    assert 0 < block_depths[0] < block_depths[1] < block_depths[2] < depths['norm.weight'][0] == 4
    assert model.get_layer_depth('decode_head.conv_seg.weight', 'backbone.') == (4, 5)


def test_with_cp_same_outputs_and_gradients():
    results = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = PatchViT(arch=MICRO, patch_size=8, img_size=32, out_indices=(0, 1),
                         drop_path_rate=0.2, with_cp=with_cp).train()
        x = torch.randn(2, 3, 32, 40, requires_grad=True)
        outs = model(x)
        sum(o.square().sum() for o in outs).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((outs, grads, x.grad))
    (outs0, grads0, xg0), (outs1, grads1, xg1) = results
    for a, b in zip(outs0, outs1):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for name in grads0:
        torch.testing.assert_close(grads0[name], grads1[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(xg0, xg1, rtol=0, atol=1e-6)


@pytest.mark.parametrize('registry', ['mmseg', 'mmdet'])
def test_registry_build(registry):
    models = __import__(f'{registry}.registry', fromlist=['MODELS']).MODELS
    model = models.build(dict(type='PatchViT', arch=MICRO, patch_size=4, img_size=32,
                              out_indices=[-1]))
    assert isinstance(model, PatchViT)
    assert (model.patch_size, model.embed_dims, model.num_layers) == (4, 32, 2)


@pytest.mark.parametrize('kwargs, match', [
    (dict(patch_size=0), 'patch_size'),
    (dict(patch_size=33), 'patch_size'),
    (dict(arch='huge'), 'unknown arch'),
    (dict(arch=dict(embed_dims=30, num_layers=1, num_heads=4)), 'divisible'),
    (dict(arch=dict(embed_dims=32, num_layers=1)), 'num_heads'),
    (dict(out_indices=2), 'out_indices'),
    (dict(img_size=(32,)), 'img_size'),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PatchViT(**dict(dict(arch=MICRO, img_size=32), **kwargs))


def test_with_cp_backward_after_two_forwards_in_one_autocast_region():
    """Selective checkpointing replays the block op by op; autocast's weight-cast cache from an
    earlier forward in the same region must not change that replay."""
    m = PatchViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2), patch_size=4, img_size=32,
                 with_cp=True).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        m(x)
        y = m(x)[0]
    y.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.blocks.parameters())
