"""Bilinear upsample + cross-entropy + pixel accuracy without the full-size logits.

mmseg's decode heads resize their (N, C, h, w) logits to the label size (N, H, W) and take the
cross-entropy there. At 512 x 512, 150 classes, batch 16 that is a 629 M-element tensor that is
written, cast to float32, log-softmaxed and read again by the backward. Here the logits are
interpolated along H by a small matrix product (N, C, H, w); a Triton kernel
(``upsample_ce_kernel.py``), one program per image row, interpolates along W inside the kernel,
takes the loss, the argmax and the loss's gradient pixel by pixel and reduces that gradient onto
the row's w source columns; one more matrix product takes it back to (N, C, h, w). The loss is
the last op of the graph, so its gradient is computed in the forward.

The value is mmseg's ``CrossEntropyLoss`` (softmax, ``reduction='mean'``, no class weights) of
``F.interpolate(logits, label.shape[-2:], mode='bilinear')``, and the accuracy is
``pixel_accuracy``'s, accumulated in float32. The kernel's two products run in full fp32 for
fp32 logits and on tensor cores (tf32) for bf16 / fp16 logits (``dot_precision``): a tf32
input keeps 10 mantissa bits, more than the 7 of the bf16 logits that the unfused path resizes
and feeds to the loss under autocast.
"""
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .autocast_off import autocast_off
from .bilinear_matmul import device_bilinear_weights

BLOCK_X = 16  # output columns per step of a program's loop over its row
NUM_WARPS = 16  # at (256, 32) tiles: 105 registers, no spills on sm_90 (ptxas); not tuned on a GPU
MAX_TILE = 8192  # (classes, logit width) elements a program holds, padded to powers of 2


def interpreter_on():
    """Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when the kernel is imported)."""
    return os.environ.get('TRITON_INTERPRET') == '1'


def fused_ce_supported(logits: Tensor) -> bool:
    """Whether ``upsample_cross_entropy`` runs for these logits on this device: CUDA (or the
    Triton interpreter on CPU), and a (classes, width) tile of at most MAX_TILE elements, e.g.
    150 classes at width 32 (ViT p16 at 512 px), whatever the label size."""
    if not (logits.is_cuda or (logits.device.type == 'cpu' and interpreter_on())):
        return False
    return _tile_elements(logits.shape[1], logits.shape[-1]) <= MAX_TILE


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
    tile = _tile_elements(logits.shape[1], logits.shape[-1])
    if tile > MAX_TILE:
        raise ValueError(f'upsample_cross_entropy holds a (classes, logit width) tile per image '
                         f'row, padded to powers of 2: {logits.shape[1]} classes x width '
                         f'{logits.shape[-1]} -> {tile} elements, at most {MAX_TILE}')
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
            rows = torch.matmul(weights_h, logits.float()).contiguous()  # (N, C, H, w)
            block_w = _block(w)
            wx = _padded_weights(W, w, align_corners, device, block_w)
            grad_rows = torch.empty_like(rows)
            loss_sums = torch.empty(n * H, device=device)
            correct = torch.empty(n * H, device=device, dtype=torch.int32)
            upsample_ce_kernel[(n * H,)](
                rows, label.contiguous(), wx, grad_rows, loss_sums, correct, c, H, W, w,
                ignore_index, BLOCK_C=_block(c), BLOCK_W=block_w, BLOCK_X=BLOCK_X,
                DOT_PRECISION=precision, num_warps=NUM_WARPS)
            labelled = (label != ignore_index).sum()
            # mmseg's weight_reduce_loss: sum / (avg_factor + eps)
            divisor = (labelled if avg_non_ignore else label.numel()) + torch.finfo(torch.float32).eps
            loss = loss_sums.sum() / divisor
            grad = torch.matmul(weights_h.t(), grad_rows) / divisor  # (N, C, h, w)
            accuracy = (correct.sum() * 100.0 / labelled.clamp(min=1)).float().reshape(1)
        ctx.save_for_backward(grad.to(logits.dtype))
        ctx.mark_non_differentiable(accuracy)
        return loss, accuracy

    @staticmethod
    def backward(ctx, grad_loss, grad_accuracy):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None


def _block(size):
    """``size`` rounded up to a power of 2, at least 16 (``tl.dot``'s smallest dimension)."""
    return max(16, 1 << (size - 1).bit_length())


def _tile_elements(classes, width):
    return _block(classes) * _block(width)


@lru_cache(maxsize=32)
def _padded_weights(out_w, in_w, align_corners, device, block_w):
    """The (out_w, block_w) float32 W-interpolation matrix on ``device``, zero beyond column
    ``in_w``. Built and copied once per shape and device."""
    weights = device_bilinear_weights(out_w, in_w, align_corners, device, torch.float32)
    return F.pad(weights, (0, block_w - in_w)).contiguous()
