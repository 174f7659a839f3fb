"""Bilinear upsample + cross-entropy + pixel accuracy without the full-size logits.

mmseg's decode heads resize their (N, C, h, w) logits to the label size (N, H, W) and take the
cross-entropy there. At 512 x 512, 150 classes, batch 16 that is a 629 M-element tensor that is
written, cast to float32, log-softmaxed and read again by the backward. Here the logits are
interpolated along H by a small matrix product (N, C, H, w); a Triton kernel
(``upsample_ce_kernel.py``), one program per BLOCK_X pixels of an image row, interpolates along
W (a product with the few source columns the block reads), takes the loss, the argmax and the
loss's gradient pixel by pixel (classes in chunks, padded to whole chunks, online log-sum-exp)
and reduces that gradient onto those source columns; one more matrix product takes it back to
(N, C, h, w). The loss is the last op of the graph, so its gradient is computed in the forward.

The value is mmseg's ``CrossEntropyLoss`` (softmax, ``reduction='mean'``, no class weights) of
``F.interpolate(logits, label.shape[-2:], mode='bilinear')``, and the accuracy is
``pixel_accuracy``'s, in float32. The kernel's products run in full fp32 for fp32 logits and on
tensor cores (tf32) for bf16 / fp16 logits (``dot_precision``): finer than the bf16 rounding of
the unfused path under autocast. Its atomic adds make the gradient's last bits depend on the
order of the blocks, as ``F.interpolate``'s own backward does.
"""
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layers.autocast_off import autocast_off
from .bilinear_matmul import bilinear_taps, device_bilinear_weights

# Launch settings (read at each call): the fastest tiles of a sweep over (pixels, classes,
# warps) on an H200, ViT-B p16's loss shape (16 x 150 x 32 x 32 -> 512 x 512), tf32, forward +
# backward (`tools/analysis/check.py fused-ce`; its table in
# results/benchmark/h200_2026-12-02_d941585/fused_ce.md). fp32 logits ('ieee' products) spill
# registers at these tiles and still ran faster than at the next smaller ones.
BLOCK_X = 128  # output pixels per program (halved, down to 64, where a block would read more
#               than MAX_SPAN source columns, e.g. 64 for ViT p2's 256 -> 512)
BLOCK_C = 32  # classes per step of a program's loops
NUM_WARPS = 4
# registers per thread by product precision (ptxas' maxnreg; None: its choice). With tf32 at
# 128 / 32 / 4, a cap of 128 (below ptxas' own choice) fits 4 programs of 4 warps per
# multiprocessor instead of 3, without spills, and ran faster (same table).
MAX_REGISTERS = dict(tf32=128, ieee=None)
MAX_SPAN = 64  # source columns a block of BLOCK_X output pixels may read
PAD_LOGIT = -1e30  # the logit of the classes padded up to a multiple of BLOCK_C: exp() is 0


def interpreter_on():
    """Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when the kernel is imported)."""
    return os.environ.get('TRITON_INTERPRET') == '1'


def fused_ce_supported(logits: Tensor, out_w: int, align_corners: bool = False) -> bool:
    """Whether ``upsample_cross_entropy`` runs for these logits resized to width ``out_w`` on
    this device: CUDA (or the Triton interpreter on CPU), and every block of output columns
    (``_blocking``) reading at most MAX_SPAN source columns (an upsample, e.g. ViT p16's
    32 -> 512)."""
    if not (logits.is_cuda or (logits.device.type == 'cpu' and interpreter_on())):
        return False
    return _blocking(out_w, logits.shape[-1], align_corners)[1] <= MAX_SPAN


def dot_precision(dtype: torch.dtype) -> str:
    """The kernel's product precision for logits of ``dtype``: 'tf32' for 16-bit floats (bf16
    values are exact in tf32; the rounding of their interpolation is finer than the bf16 one
    of the unfused path), 'ieee' (full fp32) otherwise."""
    return 'tf32' if dtype in (torch.bfloat16, torch.float16) else 'ieee'


def upsample_cross_entropy(logits: Tensor, label: Tensor, align_corners: bool = False,
                           ignore_index: int = 255, avg_non_ignore: bool = False,
                           precision: str = None):
    """(loss, accuracy %) of (N, C, h, w) ``logits`` bilinearly resized to (N, H, W) ``label``.

    ``loss`` is differentiable w.r.t. ``logits``; ``avg_non_ignore`` as in mmseg's
    ``CrossEntropyLoss`` (mean over labelled pixels instead of all pixels); ``precision``: the
    kernel's 'ieee' or 'tf32' products, ``None`` for ``dot_precision(logits.dtype)``.
    """
    if precision not in (None, 'ieee', 'tf32'):
        raise ValueError(f"upsample_cross_entropy precision must be None, 'ieee' or 'tf32', "
                         f"got {precision!r}")
    if logits.dim() != 4 or label.dim() != 3 or logits.shape[0] != label.shape[0]:
        raise ValueError(f'upsample_cross_entropy takes (N, C, h, w) logits and (N, H, W) labels, '
                         f'got {tuple(logits.shape)} and {tuple(label.shape)}')
    block_x, span = _blocking(label.shape[-1], logits.shape[-1], align_corners)
    if span > MAX_SPAN:
        raise ValueError(f'upsample_cross_entropy reads at most {MAX_SPAN} source columns per '
                         f'{block_x} output pixels: width {logits.shape[-1]} -> '
                         f'{label.shape[-1]} needs {span} (the kernel is made for upsampling)')
    return _UpsampleCrossEntropy.apply(logits, label, align_corners, ignore_index, avg_non_ignore,
                                       precision or dot_precision(logits.dtype))


class _UpsampleCrossEntropy(torch.autograd.Function):

    @staticmethod
    def forward(ctx, logits, label, align_corners, ignore_index, avg_non_ignore, precision):
        from .upsample_ce_kernel import upsample_ce_kernel
        n, c, h, w = logits.shape
        H, W = label.shape[-2:]
        device = logits.device
        with autocast_off(device.type):
            weights_h = device_bilinear_weights(H, h, align_corners, device, torch.float32)
            padded = -(-c // BLOCK_C) * BLOCK_C  # classes, padded for the kernel's chunks
            logits_p = F.pad(logits.float(), (0, 0, 0, 0, 0, padded - c), value=PAD_LOGIT)
            rows = torch.matmul(weights_h, logits_p).contiguous()  # (N, padded, H, w)
            block_x, _ = _blocking(W, w, align_corners)
            lo, hi, a, b, k0, span = _column_taps(W, w, align_corners, device, block_x)
            grad_rows = torch.zeros_like(rows)
            blocks = k0.numel()
            loss_sums = torch.empty(n * H * blocks, device=device)
            correct = torch.empty(n * H * blocks, device=device, dtype=torch.int32)
            upsample_ce_kernel[(n * H, blocks)](
                rows, label.contiguous(), lo, hi, a, b, k0, grad_rows, loss_sums, correct,
                c, padded, H, W, w, ignore_index, BLOCK_C=BLOCK_C, BLOCK_X=block_x,
                BLOCK_K=_block(span), DOT_PRECISION=precision, num_warps=NUM_WARPS,
                **_register_limit(precision))
            labelled = (label != ignore_index).sum()
            # mmseg's weight_reduce_loss: sum / (avg_factor + eps)
            divisor = (labelled if avg_non_ignore else label.numel()) + torch.finfo(torch.float32).eps
            loss = loss_sums.sum() / divisor
            grad = torch.matmul(weights_h.t(), grad_rows[:, :c]) / divisor  # (N, C, h, w)
            accuracy = (correct.sum() * 100.0 / labelled.clamp(min=1)).float().reshape(1)
        ctx.save_for_backward(grad.to(logits.dtype))
        ctx.mark_non_differentiable(accuracy)
        return loss, accuracy

    @staticmethod
    def backward(ctx, grad_loss, grad_accuracy):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None


def _register_limit(precision):
    """The kernel's launch option for MAX_REGISTERS[precision]; none where Triton's NVIDIA
    backend has no ``maxnreg`` option."""
    limit = MAX_REGISTERS.get(precision)
    return {} if limit is None or not _has_maxnreg() else dict(maxnreg=limit)


@lru_cache(maxsize=1)
def _has_maxnreg():
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:
        return False
    return 'maxnreg' in getattr(CUDAOptions, '__dataclass_fields__', {})


def _block(size):
    """``size`` rounded up to a power of 2, at least 16 (``tl.dot``'s smallest dimension)."""
    return max(16, 1 << (size - 1).bit_length())


@lru_cache(maxsize=32)
def _blocking(out_w, in_w, align_corners):
    """(output pixels per program, source columns the widest such block reads): BLOCK_X,
    halved (down to 64) while a block would read more than MAX_SPAN columns."""
    block_x = BLOCK_X
    span = _column_taps(out_w, in_w, align_corners, 'cpu', block_x)[-1]
    while block_x > 64 and span > MAX_SPAN:
        block_x //= 2
        span = _column_taps(out_w, in_w, align_corners, 'cpu', block_x)[-1]
    return block_x, span


@lru_cache(maxsize=32)
def _column_taps(out_w, in_w, align_corners, device, block_x):
    """Per output column its source columns ``lo``, ``hi`` (int32) and weights ``a``, ``b``
    (float32); per block of ``block_x`` columns its first source column ``k0``; and the widest
    block's source span. On ``device``, built once per shape."""
    lo, hi, frac = bilinear_taps(out_w, in_w, align_corners)
    starts = torch.arange(0, out_w, block_x)
    k0 = lo[starts]  # lo and hi do not decrease along the row
    last = hi[torch.clamp(starts + block_x, max=out_w) - 1]
    span = int((last - k0 + 1).max())
    as_device = dict(device=device)
    return (lo.to(torch.int32).to(**as_device), hi.to(torch.int32).to(**as_device),
            (1 - frac).float().to(**as_device), frac.float().to(**as_device),
            k0.to(torch.int32).to(**as_device), span)
