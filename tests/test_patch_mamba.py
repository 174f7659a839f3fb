"""PatchMamba (Adventurer): official golden forward, contract, checkpoints, registries."""
import argparse
import runpy
from pathlib import Path

import pytest
import torch

import mmpatch.models  # noqa: F401  (registers the models)
from mmpatch.models.backbones.patch_mamba import PatchMamba, _flip_but_last, flips_for
from mmpatch.models.weights.adventurer_convert import adventurer_to_patch_mamba
from mmpatch.models.weights.checkpoint_filter import CheckpointMismatchError, load_state_dict_strict

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / 'shared/reference/adventurer_golden/adventurer_golden_p4_img32_d128_depth4.pt'
# A 2-block model with 4 small heads, for fast tests.
MICRO = dict(embed_dims=32, num_layers=2, d_state=8, headdim=16)


def micro(**kwargs):
    torch.manual_seed(0)
    kwargs = dict(dict(arch=MICRO, patch_size=4, img_size=32), **kwargs)
    return PatchMamba(**kwargs)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def load_tool(relative_path):
    """Namespace of a script under tools/ (tools/ is not a package)."""
    return runpy.run_path(str(REPO / relative_path), run_name='tool_under_test')


def official_state_dict(model, num_classes=10):
    """``model``'s weights as the official code saves them: with a classifier head."""
    state_dict = dict(model.state_dict())
    state_dict['head.weight'] = torch.randn(num_classes, model.embed_dims)
    state_dict['head.bias'] = torch.randn(num_classes)
    return state_dict


@pytest.fixture(scope='module')
def golden():
    if not GOLDEN.is_file():
        pytest.skip(f'golden file {GOLDEN} is absent (CI puts ../shared beside the repo)')
    return torch.load(GOLDEN, map_location='cpu', weights_only=False)


def test_golden_official_forward(golden):
    cfg = golden['config']
    assert cfg['cls_token_position'] == 'last' and cfg['flip'].startswith('paper')
    model = PatchMamba(arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth'],
                                 d_state=cfg['mamba_d_state'], expand=cfg['mamba_expand'],
                                 headdim=cfg['headdim']),
                       patch_size=cfg['patch_size'], img_size=cfg['img_size']).eval()
    load_state_dict_strict(model, adventurer_to_patch_mamba(golden['state_dict'], model))
    with torch.no_grad():
        tokens, hw = model.forward_tokens(golden['input'])
        maps = model(golden['input'])
    assert tokens.shape == golden['tokens'].shape and hw == (8, 8)
    assert rel_err(tokens, golden['tokens']) < 1e-3
    assert rel_err(model.norm_f(tokens), golden['normed']) < 1e-3
    # forward(): norm_f'd patch tokens, class token dropped, row-major grid
    expected = golden['normed'][:, :-1].reshape(2, 8, 8, -1).permute(0, 3, 1, 2)
    assert maps[0].shape == expected.shape and rel_err(maps[0], expected) < 1e-3


@pytest.mark.parametrize('p', [1, 2, 4, 8, 16])
def test_forward_backward_every_patch_size(p):
    img = 16 if p == 1 else 32  # at most 256 tokens
    model = micro(patch_size=p, img_size=img, out_indices=(0, -1), drop_path_rate=0.1).train()
    x = torch.randn(2, 3, img, img, requires_grad=True)
    outs = model(x)
    side = img // p
    assert [o.shape for o in outs] == [(2, 32, side, side)] * 2
    sum(o.square().mean() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    missing = [n for n, q in model.named_parameters() if q.grad is None]
    assert not missing, missing


def test_non_square_and_padded_input():
    model = micro(patch_size=8, out_indices=(-2, -1)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 37, 21))  # padded to 40 x 24
    assert [o.shape for o in outs] == [(1, 32, 5, 3)] * 2
    with pytest.raises(ValueError, match='out_indices'):
        micro(out_indices=2)
    with pytest.raises(ValueError, match='patch_size'):
        micro(patch_size=33)


def test_final_norm_on_the_last_block_only():
    x = torch.randn(1, 3, 16, 16)
    with_norm = micro(out_indices=(1, 0)).eval()
    without = micro(out_indices=(1, 0), final_norm=False).eval()
    assert without.norm_f is None and 'norm_f.weight' not in without.state_dict()
    load_state_dict_strict(without, adventurer_to_patch_mamba(with_norm.state_dict(), without))
    with torch.no_grad():
        a, b = with_norm(x), without(x)
        tokens, hw = with_norm.forward_tokens(x)
    assert torch.equal(a[1], b[1])  # block 0: never normed
    assert torch.allclose(a[0], with_norm._to_map(with_norm.norm_f(tokens), hw))
    assert torch.allclose(b[0], with_norm._to_map(tokens, hw))
    # the last out index is not the last block: no map is normed (mmseg's VisionTransformer)
    first_only = micro(out_indices=0).eval()
    with torch.no_grad():
        assert torch.equal(first_only(x)[0], a[1])


def test_with_cp_matches_outputs_and_grads():
    x = torch.randn(2, 3, 16, 16)
    results = []
    for with_cp in (False, True):
        model = micro(with_cp=with_cp, out_indices=(0, 1)).train()
        out = sum(o.square().sum() for o in model(x))
        out.backward()
        results.append((out.detach(), {n: q.grad for n, q in model.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.allclose(out_a, out_b, rtol=1e-5)
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6), name


def test_layer_depth_ordering():
    model = micro(arch=dict(MICRO, num_layers=3))
    depths = {n: model.get_layer_depth(n) for n, _ in model.named_parameters()}
    assert all(num == 5 for _, num in depths.values())
    assert depths['patch_embed.proj.weight'][0] == depths['cls_token'][0] == depths['pos_embed'][0] == 0
    for i in range(3):
        assert depths[f'layers.{i}.mixer.A_log'][0] == depths[f'layers.{i}.mlp.w3.bias'][0] == i + 1
    assert depths['norm_f.weight'][0] == 4
    assert model.get_layer_depth('backbone.layers.1.norm.weight', prefix='backbone.') == (2, 5)


def test_flip_schedules():
    assert [i for i, f in enumerate(flips_for('paper', 12)) if f] == [2, 3]
    assert [i for i, f in enumerate(flips_for('alternate', 12)) if f] == [2, 3, 6, 7, 10, 11]
    with pytest.raises(ValueError, match='flip_schedule'):
        flips_for('every', 4)
    arch = dict(MICRO, num_layers=8)
    paper = micro(arch=arch, flip_schedule='paper').eval()
    alternate = micro(arch=arch, flip_schedule='alternate').eval()
    alternate.load_state_dict(paper.state_dict())
    assert [b.flip for b in alternate.layers] == flips_for('alternate', 8)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(paper(x)[0], alternate(x)[0])
        # A flipping block is the plain block seen through a reversal of all but the last token.
        block = paper.layers[2]
        h = torch.randn(2, 9, 32)
        flipped = block(h)
        block.flip = False
        assert torch.allclose(flipped, _flip_but_last(block(_flip_but_last(h))), atol=1e-6)


@pytest.mark.parametrize('registry', ['mmseg', 'mmdet'])
def test_registry_build(registry):
    models = __import__(f'{registry}.registry', fromlist=['MODELS']).MODELS
    model = models.build(dict(type='PatchMamba', arch=MICRO, patch_size=8, img_size=32,
                              out_indices=[0, 1]))
    assert isinstance(model, PatchMamba) and model.patch_size == 8 and model.embed_dims == 32


def test_pretrained_official_checkpoint_resampled(tmp_path):
    src = micro(patch_size=4, img_size=32)  # grid 8 x 8
    ckpt = tmp_path / 'adventurer.pth'  # as the official main.py saves it: args beside the weights
    torch.save(dict(model=official_state_dict(src), epoch=3, args=argparse.Namespace(lr=5e-4)), ckpt)
    model = micro(patch_size=2, img_size=32, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    model.init_weights()  # grid 16 x 16, 2 x 2 kernels
    assert model.patch_embed.proj.weight.shape[-2:] == (2, 2)
    assert torch.equal(model.pos_embed[:, -1], src.pos_embed[:, -1])  # class slot kept, last
    assert torch.equal(model.layers[1].mixer.A_log, src.layers[1].mixer.A_log)
    # Same grid and kernel: an exact copy.
    same = micro(patch_size=4, img_size=32, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    same.init_weights()
    for name, value in src.state_dict().items():
        assert torch.equal(same.state_dict()[name], value), name


def test_wrong_width_checkpoint_raises(tmp_path):
    ckpt = tmp_path / 'wide.pth'
    torch.save(official_state_dict(micro(arch=dict(MICRO, embed_dims=64))), ckpt)
    model = micro(init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    with pytest.raises(CheckpointMismatchError, match='shape mismatch') as err:
        model.init_weights()
    assert 'layers.0.mixer.in_proj.weight' in str(err.value)


def test_converter_tool(tmp_path):
    src = micro(patch_size=4, img_size=32)
    ckpt = tmp_path / 'adventurer.pth'
    torch.save(dict(model=official_state_dict(src)), ckpt)
    dst = tmp_path / 'converted.pth'
    load_tool('tools/model_converters/adventurer_to_mmpatch.py')['main'](
        [str(ckpt), str(dst), '--patch-size', '8', '--img-size', '48'])
    saved = torch.load(dst, weights_only=False)
    assert saved['meta']['arch']['embed_dims'] == 32 and saved['meta']['patch_size'] == 8
    assert not any(k.startswith('head.') for k in saved['state_dict'])
    model = micro(patch_size=8, img_size=48, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    assert model.pos_embed.shape == (1, 6 * 6 + 1, 32)
    assert torch.equal(model.pos_embed, saved['state_dict']['pos_embed'])


def test_compile_blocks_flag():
    with pytest.raises(ValueError, match="compile_blocks must be .*'default'"):
        micro(compile_blocks='reduce-overhead')  # CUDA graphs: not offered for PatchMamba
    with pytest.raises(ValueError, match='compile_blocks'):
        micro(compile_blocks='fast')
    x = torch.randn(1, 3, 16, 16)
    eager, compiled = micro().train(), micro(compile_blocks=True).train()
    assert compiled.compile_blocks == 'default'
    compiled.load_state_dict(eager.state_dict())
    assert torch.equal(eager(x)[0], compiled(x)[0])  # CPU inputs run eagerly


def test_compiled_block_breaks_only_at_the_kernels(monkeypatch):
    """With the kernel namespace resolved, torch.compile traces a whole block except the scan
    and the gated norm (stand-ins here for mamba_ssm's Triton kernels, which need CUDA)."""
    import types

    import torch.nn.functional as F

    from mmpatch.models.backbones.plain_backbone import call_block
    from mmpatch.models.layers import mamba2_mixer
    from mmpatch.models.layers.ssd_scan import ssd_chunked
    calls = []

    def scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False):
        calls.append('scan')
        return ssd_chunked(x, F.softplus(dt.float() + dt_bias), A, B, C, D=D, chunk_size=16)

    def gated_norm(y, weight, bias, z=None, eps=1e-5, group_size=None, norm_before_gate=False):
        calls.append('norm')
        y = y * F.silu(z)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps) * weight

    disable = torch.compiler.disable
    kernels = types.SimpleNamespace(chunk_scan=disable(scan), rmsnorm=disable(gated_norm),
                                    split_conv1d_scan=None)
    monkeypatch.setattr(mamba2_mixer, '_KERNELS', {'kernels': kernels})
    monkeypatch.setattr(mamba2_mixer.Mamba2Mixer, 'resolved_impl', lambda self, u: 'mamba_ssm')
    block = micro().layers[0]
    x = torch.randn(2, 5, 32)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(call_block)(block, x)
    reasons = [str(r.reason) for r in explained.break_reasons]
    # each break skips a kernel; none comes from resolving the kernels inside the graph
    skipped_kernel = 'Skip calling `torch.compiler.disable()`d'
    assert reasons and all(r.startswith(skipped_kernel) for r in reasons), reasons
    assert explained.graph_count <= 5, reasons  # before, between and after the two kernels
    out = torch.compile(call_block, backend='aot_eager')(block, x)
    assert torch.allclose(out, block(x), atol=1e-6) and {'scan', 'norm'} <= set(calls)
