"""The fused resize + cross-entropy kernel (Triton's CPU interpreter here) against mmseg's path."""
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.losses import CrossEntropyLoss

import mmpatch.models.losses.upsample_cross_entropy as fce
from mmpatch.models.heads.linear_head import LinearHead
from mmpatch.models.losses.pixel_accuracy import pixel_accuracy
from mmpatch.models.losses.upsample_cross_entropy import (_column_taps, dot_precision,
                                                         fused_ce_supported, upsample_cross_entropy)

pytest.importorskip('triton')
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'  # CPU: Triton's interpreter (conftest)
needs_kernel = pytest.mark.skipif(DEVICE == 'cpu' and os.environ.get('TRITON_INTERPRET') != '1',
                                  reason='no GPU and TRITON_INTERPRET is not 1')


@pytest.fixture(autouse=True)
def mmseg_scope():
    # heads build their losses in the default scope; other tests leave theirs set
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')


@needs_kernel
@pytest.mark.parametrize('avg_non_ignore', (False, True))
@pytest.mark.parametrize('align_corners', (False, True))
@pytest.mark.parametrize('in_hw,out_hw,classes', (((4, 4), (24, 64), 5), ((3, 5), (13, 37), 20),
                                                  ((4, 3), (9, 6), 3), ((2, 2), (32, 80), 17),
                                                  ((6, 20), (12, 40), 4),
                                                  ((5, 7), (5, 7), 6), ((8, 16), (4, 9), 3),
                                                  ((2, 3), (5, 8), 150),  # class 255 in the tile
                                                  ((3, 10), (7, 300), 40),  # 5 blocks, 3 chunks
                                                  ((2, 24), (5, 200), 7),
                                                  ((3, 4), (11, 30), 32)))  # no padded class
@pytest.mark.parametrize('block_x', (64, 128))
def test_equals_interpolate_and_mmseg_cross_entropy(in_hw, out_hw, classes, align_corners,
                                                    avg_non_ignore, block_x, monkeypatch):
    monkeypatch.setattr(fce, 'BLOCK_X', block_x)
    torch.manual_seed(0)
    logits = torch.randn(2, classes, *in_hw).to(DEVICE).requires_grad_()
    label = torch.randint(0, classes, (2, *out_hw)).to(DEVICE)
    label[0, :3] = 255
    label[1, :, -2:] = 255
    loss, acc = upsample_cross_entropy(logits, label, align_corners, 255, avg_non_ignore)
    (grad,) = torch.autograd.grad(3 * loss, logits)

    resized = F.interpolate(logits, out_hw, mode='bilinear', align_corners=align_corners)
    ref = CrossEntropyLoss(avg_non_ignore=avg_non_ignore)(resized, label, ignore_index=255)
    (ref_grad,) = torch.autograd.grad(3 * ref, logits)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(acc, pixel_accuracy(resized, label, 255))
    assert not acc.requires_grad


@needs_kernel
def test_padded_classes_do_not_count_for_very_negative_logits():
    # the kernel pads the classes to a multiple of BLOCK_C with PAD_LOGIT; softmax ignores shifts
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 3, 4).to(DEVICE)
    label = torch.randint(0, 5, (1, 9, 13)).to(DEVICE)
    loss, acc = upsample_cross_entropy(logits, label)
    shifted_loss, shifted_acc = upsample_cross_entropy(logits - 1e4, label)
    torch.testing.assert_close(shifted_loss, loss, rtol=1e-3, atol=0)
    torch.testing.assert_close(shifted_acc, acc)


def test_register_limit_for_tensor_core_products_only(monkeypatch):
    monkeypatch.setattr(fce, '_has_maxnreg', lambda: True)
    assert fce._register_limit('tf32') == dict(maxnreg=fce.MAX_REGISTERS['tf32']) != {}
    assert fce._register_limit('ieee') == {}
    monkeypatch.setattr(fce, '_has_maxnreg', lambda: False)  # an older Triton: no option
    assert fce._register_limit('tf32') == {}


@needs_kernel
def test_fused_head_uses_the_kernel_only_where_it_applies(monkeypatch):
    from mmpatch.models.heads import linear_head
    calls = []
    real = linear_head.upsample_cross_entropy
    monkeypatch.setattr(linear_head, 'upsample_cross_entropy',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    logits = torch.randn(2, 5, 4, 4, device=DEVICE)
    label = torch.randint(0, 5, (2, 1, 32, 32), device=DEVICE)
    one_ce = LinearHead(in_channels=8, num_classes=5, fast_loss='fused')
    assert one_ce._fused_loss(logits, label) is not None and calls
    two_losses = LinearHead(in_channels=8, num_classes=5, fast_loss='fused',
                            loss_decode=[dict(type='CrossEntropyLoss'), dict(type='DiceLoss')])
    weighted = LinearHead(in_channels=8, num_classes=5, fast_loss='fused',
                          loss_decode=dict(type='CrossEntropyLoss', class_weight=[1.0] * 5))
    calls.clear()
    for head in (two_losses, weighted, LinearHead(in_channels=8, num_classes=5)):
        assert head._fused_loss(logits, label) is None
    too_wide = torch.randn(2, 5, 4, 1024, device=DEVICE)  # a downsample: the matmul path
    assert one_ce._fused_loss(too_wide, label) is None and not calls


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r'at most 64 source columns per 64 output pixels: '
                                         r'width 1024 -> 256 needs 254'):
        upsample_cross_entropy(torch.randn(1, 3, 8, 1024), torch.zeros(1, 8, 256, dtype=torch.long))
    with pytest.raises(ValueError, match=r'\(N, C, h, w\) logits and \(N, H, W\) labels'):
        upsample_cross_entropy(torch.randn(1, 3, 8, 8), torch.zeros(2, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="fast_loss must be True, False or 'fused'"):
        LinearHead(in_channels=8, num_classes=5, fast_loss='triton')
    with pytest.raises(ValueError, match="precision must be None, 'ieee' or 'tf32', got 'bf16'"):
        upsample_cross_entropy(torch.randn(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long),
                               precision='bf16')


def test_tensor_cores_only_for_16_bit_logits():
    # tf32 keeps every bf16 / fp16 logit exactly; fp32 logits keep full-precision products
    assert dot_precision(torch.bfloat16) == dot_precision(torch.float16) == 'tf32'
    assert dot_precision(torch.float32) == 'ieee'


def test_not_supported_on_cpu_without_the_interpreter(monkeypatch):
    logits = torch.randn(1, 3, 4, 4)
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert fused_ce_supported(logits, 16)
    monkeypatch.delenv('TRITON_INTERPRET')
    assert not fused_ce_supported(logits, 16)


def test_supported_where_blocks_read_few_source_columns():
    logits = torch.randn(1, 150, 32, 32)  # ViT p16 at 512 px
    assert _column_taps(512, 32, False, 'cpu', 64)[-1] == 6  # 64 pixels: 4 columns, 2 neighbours
    assert fused_ce_supported(logits, 512) and fused_ce_supported(logits, 512, True)
    assert not fused_ce_supported(torch.randn(1, 3, 4, 256), 64)  # a downsample


def test_blocks_of_128_pixels_where_they_read_few_enough_columns():
    # p16 / p8 / p4 at 512 px: 128-pixel blocks read 10 / 18 / 34 columns; p2 (256 -> 512): 66,
    # over MAX_SPAN, so 64-pixel blocks (34 columns)
    assert [fce._blocking(512, w, False) for w in (32, 64, 128, 256)] == [
        (128, 10), (128, 18), (128, 34), (64, 34)]
    assert _column_taps(512, 256, False, 'cpu', 128)[-1] == 66


COMPILE = """
import glob, os, subprocess, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mmpatch.models.losses.upsample_ce_kernel import upsample_ce_kernel
from mmpatch.models.losses.upsample_cross_entropy import BLOCK_C, BLOCK_X, NUM_WARPS, _register_limit
PRECISION = {precision!r}
signature = dict(rows_ptr='*fp32', label_ptr='*i64', lo_ptr='*i32', hi_ptr='*i32', a_ptr='*fp32',
                 b_ptr='*fp32', k0_ptr='*i32', grad_rows_ptr='*fp32', loss_ptr='*fp32',
                 correct_ptr='*i32', C='i32', CP='i32', H='i32', W='i32', w='i32',
                 ignore_index='i32',
                 BLOCK_C='constexpr', BLOCK_X='constexpr', BLOCK_K='constexpr',
                 DOT_PRECISION='constexpr')
src = ASTSource(fn=upsample_ce_kernel, signature=signature,  # ViT p16 at 512 px: 10 columns
                constexprs=dict(BLOCK_C=BLOCK_C, BLOCK_X=BLOCK_X, BLOCK_K=16,
                                DOT_PRECISION=PRECISION))
compiled = triton.compile(src, target=GPUTarget('cuda', 90, 32),
                          options=dict(num_warps=NUM_WARPS, **_register_limit(PRECISION)))
ptx = os.path.join(tempfile.mkdtemp(), 'k.ptx')
open(ptx, 'w').write(compiled.asm['ptx'])
(ptxas,) = glob.glob(os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin/ptxas'))
info = subprocess.run([ptxas, '-v', '--gpu-name', 'sm_90a', ptx, '-o', ptx + '.cubin'],
                      capture_output=True, text=True, check=True).stderr
print(len(compiled.asm['cubin']))
print(info)
"""


@pytest.mark.parametrize('precision', ('ieee', 'tf32'))
def test_kernel_compiles_for_hopper(tmp_path, precision):
    # the interpreter runs what the GPU compiler may reject: compile to cubins (no GPU needed),
    # in a process without the interpreter and with an empty cache
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['TRITON_CACHE_DIR'] = str(tmp_path)
    proc = subprocess.run([sys.executable, '-c', COMPILE.format(precision=precision)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cubin_bytes, ptxas_info = proc.stdout.split('\n', 1)
    assert int(cubin_bytes) > 1000
    if precision == 'tf32':  # the training path (bf16 logits): registers suffice at this tile
        assert ' 0 bytes spill stores' in ptxas_info, ptxas_info
    limit = fce.MAX_REGISTERS[precision]
    used = int(re.search(r'Used (\d+) registers', ptxas_info).group(1))
    assert limit is None or used <= limit, ptxas_info
