"""FLOP counter vs analytic formulas, SDPA kernel choice, PatchViT speed flags (the tools' smoke
tests: tests/test_analysis_tools.py)."""
import math
import runpy
import types
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mmpatch.models.backbones.patch_vit as patch_vit_module
from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.layers.sdpa_backend import choose_sdpa_backends, resolve_sdpa_backends
from mmpatch.utils.flops import count_flops_by_op, split_attention_flops

ROOT = Path(__file__).resolve().parents[1]
VIT = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=4.)
MAMBA = dict(embed_dims=32, num_layers=2, headdim=16, d_state=8, chunk_size=8)


def load_tool(path):
    return runpy.run_path(str(ROOT / path))


# ------------------------------------------------------------------ FLOPs

def vit_forward_flops(arch, patch, img, in_chans=3):
    """Matmul FLOPs (2 x multiply-adds) of a ViT forward: patch conv, qkv, proj, MLP, attention."""
    c, n = arch['embed_dims'], math.ceil(img / patch) ** 2
    t = n + 1  # class token
    hidden = int(c * arch['mlp_ratio'])
    per_block = 2 * t * c * 3 * c + 2 * t * c * c + 2 * 2 * t * c * hidden + 4 * t * t * c
    return 2 * n * c * in_chans * patch ** 2 + arch['num_layers'] * per_block, \
        arch['num_layers'] * 4 * t * t * c


def mamba_forward_flops(arch, patch, img, in_chans=3, expand=2, d_conv=4, mlp_ratio=2.5, ngroups=1):
    """Matmul FLOPs of an Adventurer forward with the chunked SSD scan (chunk Q, as the kernel)."""
    c, n = arch['embed_dims'], math.ceil(img / patch) ** 2
    p, d_state, q = arch['headdim'], arch['d_state'], arch['chunk_size']
    di = expand * c
    h, g = di // p, ngroups
    t = n + 1  # class token
    seq = t + 1  # the mixer also sees the mean token
    chunks = math.ceil(seq / q)
    padded = chunks * q
    conv_dim = di + 2 * g * d_state
    assert chunks <= q, 'formula covers one level of the chunk-state scan'
    ssd = (2 * chunks * g * q * q * d_state      # C_t . B_s inside each chunk
           + 2 * h * chunks * q * q * p          # masked (Q x Q) product with x dt
           + 2 * h * padded * p * d_state        # each chunk's state
           + 2 * h * chunks * chunks * p * d_state  # states passed across chunks
           + 2 * h * padded * p * d_state)       # outputs from the entering states
    hidden = int(c * mlp_ratio)
    per_block = (2 * seq * c * (2 * di + 2 * g * d_state + h)       # in_proj
                 + 2 * conv_dim * (seq + d_conv - 1) * d_conv       # depthwise causal conv
                 + ssd + 2 * seq * di * c                           # out_proj
                 + 3 * 2 * t * c * hidden)                          # SwiGLU
    return 2 * n * c * in_chans * patch ** 2 + arch['num_layers'] * per_block


@pytest.mark.parametrize('patch,img', [(8, 32), (4, 24)])
def test_vit_flop_count_matches_formula(patch, img):
    counts = count_flops_by_op(PatchViT(arch=VIT, patch_size=patch, img_size=img), (1, 3, img, img))
    attention, other = split_attention_flops(counts)
    total, want_attention = vit_forward_flops(VIT, patch, img)
    assert attention > 0, f'SDPA was not counted: {counts}'
    assert abs(attention + other - total) / total < 0.01
    assert abs(attention - want_attention) / want_attention < 0.01


def test_mamba_flop_count_includes_ssd_scan():
    model = PatchMamba(arch=MAMBA, patch_size=4, img_size=24)
    model.layers[0].mixer.torch_chunk_size = 3  # must be set to the kernel's chunk while counting
    counts = count_flops_by_op(model, (1, 3, 24, 24))
    want = mamba_forward_flops(MAMBA, 4, 24)
    assert abs(sum(counts.values()) - want) / want < 0.01, counts
    assert model.layers[0].mixer.torch_chunk_size == 3 and model.layers[0].mixer.impl == 'auto'
    assert counts['aten.bmm'] > 0  # the scan's einsums


def test_get_flops_cli(tmp_path, capsys):
    result = load_tool('tools/analysis/get_flops.py')['main'](
        ['--backbone', 'PatchViT', '--arch', 'tiny', '--patch-size', '16', '--shape', '64', '64'])
    total, _ = vit_forward_flops(dict(embed_dims=192, num_layers=12, mlp_ratio=4.), 16, 64)
    assert abs(result['total_flops'] - total) / total < 0.01
    assert 'scaled_dot_product' in capsys.readouterr().out


# ------------------------------------------------------------------ SDPA choice

@pytest.mark.parametrize('args,first', [
    (('cuda', torch.bfloat16, 64, (9, 0)), 'cudnn'),
    (('cuda', torch.float16, 128, (9, 0)), 'cudnn'),
    (('cuda', torch.bfloat16, 64, (8, 0)), 'flash'),
    (('cuda', torch.bfloat16, 256, (9, 0)), 'efficient'),
    (('cuda', torch.float32, 64, (9, 0)), 'efficient'),
    (('cuda', torch.bfloat16, 64, (7, 5)), 'efficient'),
    (('cpu', torch.float32, 64, None), 'flash'),
])
def test_choose_sdpa_backends(args, first):
    order = choose_sdpa_backends(*args)
    assert order[0] == first and order[-1] == 'math' and len(set(order)) == len(order)


def test_resolve_rejects_unknown_backend():
    with pytest.raises(ValueError, match='attn_backend'):
        resolve_sdpa_backends('fast', torch.zeros(1), 8)
    with pytest.raises(ValueError, match='attn_backend'):
        PatchViT(arch=VIT, patch_size=8, img_size=32, attn_backend='fa3')


def _outputs_and_grads(model, x):
    model.zero_grad()
    out = model(x)[0]
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize('backend', ['auto', 'default', 'flash'])
def test_attention_backends_match_math(backend):
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=4, img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    model.attn_backend = 'math'
    ref_out, ref_grads = _outputs_and_grads(model, x)
    model.attn_backend = backend
    out, grads = _outputs_and_grads(model, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-6)


def test_strict_backend_that_cannot_run_raises():
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, attn_backend='cudnn')
    with pytest.raises(RuntimeError, match='backend'):
        model(torch.randn(1, 3, 32, 32))


# ------------------------------------------------------------------ checkpointing, compile

class _CountAttention(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.forward_calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in patch_vit_module._ATTENTION_OPS:
            self.forward_calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('save_attention,calls_per_block', [(True, 1), (False, 2)])
def test_selective_checkpointing_keeps_attention(save_attention, calls_per_block):
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=4, img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    ref_out, ref_grads = _outputs_and_grads(model, x)
    model.with_cp, model.cp_save_attention = True, save_attention
    with _CountAttention() as counter:
        out, grads = _outputs_and_grads(model, x)
    assert counter.forward_calls == calls_per_block * VIT['num_layers']
    torch.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def test_compile_blocks_runs_eagerly_on_cpu(monkeypatch):
    def no_compile():
        raise AssertionError('blocks must not be compiled for CPU inputs')
    monkeypatch.setattr(patch_vit_module, 'compiled_block_call', no_compile)
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=True).train()
    x = torch.randn(1, 3, 32, 32)
    out = model(x)[0]
    model.compile_blocks = False
    torch.testing.assert_close(model(x)[0], out)


def test_compile_blocks_takes_a_compile_mode(monkeypatch):
    modes = []
    monkeypatch.setattr(patch_vit_module, 'compiled_block_call', lambda mode: modes.append(mode))
    on_gpu = types.SimpleNamespace(is_cuda=True)  # the choice only reads x.is_cuda
    for flag in (True, 'reduce-overhead'):
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=flag).train()._block_call(on_gpu)
    assert modes == ['default', 'reduce-overhead']
    with pytest.raises(ValueError, match="compile_blocks must be True, False or a torch.compile "
                                         "mode of .*'reduce-overhead'.*, got 'fast'"):
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks='fast')
    with pytest.raises(ValueError, match='got 1'):  # a flag, not an int
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=1)
    for mode in ('reduce-overhead', 'max-autotune'):  # the modes with CUDA graphs
        with pytest.raises(ValueError, match=f"'{mode}' .* not supported with with_cp"):
            PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=mode, with_cp=True)
    PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks='max-autotune-no-cudagraphs',
             with_cp=True)
