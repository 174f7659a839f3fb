"""Bilinear upsample + cross-entropy + pixel accuracy without the full-size logits.

mmseg's decode heads resize their (N, C, h, w) logits to the label size (N, H, W) and take the
cross-entropy there. At 512 x 512, 150 classes, batch 16 that is a 629 M-element tensor that is
written, cast to float32, log-softmaxed and read again by the backward. Here the logits are
interpolated along H by a small matrix product (N, C, H, w), a Triton kernel
(``upsample_ce_kernel.py``) interpolates along W inside the kernel and takes the loss, the argmax and
the loss's gradient pixel by pixel, and one more matrix product takes that gradient back to
(N, C, h, w). The loss is the last op of the graph, so its gradient is computed in the forward.

The value is mmseg's ``CrossEntropyLoss`` (softmax, ``reduction='mean'``, no class weights) of
``F.interpolate(logits, label.shape[-2:], mode='bilinear')``, and the accuracy is
``pixel_accuracy``'s, all in float32.
"""
import os
from functools import lru_cache

import torch
from torch import Tensor

from .autocast_off import autocast_off
from .bilinear_matmul import bilinear_source, device_bilinear_weights

BLOCK_X = 32  # pixels of one image row per program
MAX_SPAN = BLOCK_X // 2 + 1  # source columns a block may touch: 2x upsampling along W or more


def interpreter_on():
    """Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when the kernel is imported)."""
    return os.environ.get('TRITON_INTERPRET') == '1'


def fused_ce_supported(logits: Tensor, label_hw, align_corners: bool = False) -> bool:
    """Whether ``upsample_cross_entropy`` runs for these shapes on this device: CUDA (or the
    Triton interpreter on CPU), and at least 2x upsampling along W at BLOCK_X columns per block."""
    if not (logits.is_cuda or (logits.device.type == 'cpu' and interpreter_on())):
        return False
    return column_span(int(label_hw[1]), logits.shape[-1], align_corners) <= MAX_SPAN


def upsample_cross_entropy(logits: Tensor, label: Tensor, align_corners: bool = False,
                           ignore_index: int = 255, avg_non_ignore: bool = False):
    """(loss, accuracy %) of (N, C, h, w) ``logits`` bilinearly resized to (N, H, W) ``label``.

    ``loss`` is differentiable w.r.t. ``logits``; ``avg_non_ignore`` as in mmseg's
    ``CrossEntropyLoss`` (mean over labelled pixels instead of all pixels).
    """
    if logits.dim() != 4 or label.dim() != 3 or logits.shape[0] != label.shape[0]:
        raise ValueError(f'upsample_cross_entropy takes (N, C, h, w) logits and (N, H, W) labels, '
                         f'got {tuple(logits.shape)} and {tuple(label.shape)}')
    span = column_span(label.shape[-1], logits.shape[-1], align_corners)
    if span > MAX_SPAN:
        raise ValueError(f'upsample_cross_entropy needs >= 2x upsampling along W: logits width '
                         f'{logits.shape[-1]}, label width {label.shape[-1]} ({BLOCK_X} label '
                         f'columns span {span} logit columns, at most {MAX_SPAN} allowed)')
    return _UpsampleCrossEntropy.apply(logits, label, align_corners, ignore_index, avg_non_ignore)


class _UpsampleCrossEntropy(torch.autograd.Function):

    @staticmethod
    def forward(ctx, logits, label, align_corners, ignore_index, avg_non_ignore):
        from .upsample_ce_kernel import upsample_ce_kernel
        n, c, h, w = logits.shape
        H, W = label.shape[-2:]
        device = logits.device
        with autocast_off(device.type):
            weights_h = device_bilinear_weights(H, h, align_corners, device, torch.float32)
            rows = torch.matmul(weights_h, logits.float()).contiguous()  # (N, C, H, w)
            lo, hi, frac = _column_tables(W, w, align_corners, device)
            grad_rows = torch.zeros_like(rows)
            blocks = -(-W // BLOCK_X)
            loss_sums = torch.empty(n * H, blocks, device=device)
            correct = torch.empty(n * H, blocks, device=device, dtype=torch.int32)
            upsample_ce_kernel[(n * H, blocks)](
                rows, label.contiguous(), lo, hi, frac, grad_rows, loss_sums, correct,
                c, H, W, w, ignore_index, BLOCK_C=max(16, 1 << (c - 1).bit_length()),
                BLOCK_X=BLOCK_X, SPAN=column_span(W, w, align_corners), num_warps=8)
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
        return grad * grad_loss.to(grad.dtype), None, None, None, None


@lru_cache(maxsize=32)
def column_span(out_w, in_w, align_corners):
    """The most source columns that one block of BLOCK_X output columns reads."""
    lo, hi, _ = bilinear_source(out_w, in_w, align_corners)
    ends = hi[torch.arange(BLOCK_X - 1, out_w + BLOCK_X - 1, BLOCK_X).clamp(max=out_w - 1)]
    return int((ends - lo[::BLOCK_X]).max()) + 1


@lru_cache(maxsize=32)
def _column_tables(out_w, in_w, align_corners, device):
    """Per output column on ``device``: source columns ``lo``/``hi`` (int32) and ``hi``'s
    weight (float32). Built and copied once per shape and device."""
    lo, hi, frac = bilinear_source(out_w, in_w, align_corners)
    return lo.int().to(device), hi.int().to(device), frac.float().to(device)
