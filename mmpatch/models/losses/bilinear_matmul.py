"""Bilinear resize as two matrix products: ``F.interpolate``'s result, without its backward.

``F.interpolate(mode='bilinear')`` backpropagates with an atomic-add kernel that scatters every
output pixel's gradient into its 4 source cells; at a 16x upsample of 150-class logits that is
16 x 16 x 4 colliding adds per cell. Bilinear interpolation is separable, so
``Ah @ x @ Aw^T`` (``Ah``: out_h x in_h, ``Aw``: out_w x in_w, 2 non-zeros per row) gives the
same values and its backward is two more matrix products, accumulated in fp32 by the GEMM.
"""
from functools import lru_cache

import torch
from torch import Tensor


def bilinear_taps(out_size: int, in_size: int, align_corners: bool):
    """(lo, hi, frac) of 1-D bilinear interpolation, PyTorch's convention: output ``i`` is
    ``(1 - frac[i]) * x[lo[i]] + frac[i] * x[hi[i]]`` (int64, int64, float64; lo == hi at
    the last source index).

    Source coordinate of output index ``i``: ``i * (in - 1) / (out - 1)`` with
    ``align_corners``, else ``(i + 0.5) * in / out - 0.5`` clamped at 0 (as ATen's
    ``area_pixel_compute_source_index`` for a given output size).
    """
    i = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        src = i * ((in_size - 1) / (out_size - 1)) if out_size > 1 else torch.zeros_like(i)
    else:
        src = ((i + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    lo = src.floor().long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    return lo, hi, src - lo


def bilinear_weights(out_size: int, in_size: int, align_corners: bool) -> Tensor:
    """The (out_size, in_size) float64 matrix of 1-D bilinear interpolation (``bilinear_taps``)."""
    lo, hi, frac = bilinear_taps(out_size, in_size, align_corners)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights


def resize_bilinear_matmul(x: Tensor, size, align_corners: bool = False) -> Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=...)`` for (N, C, H, W) ``x``.

    Returns ``x`` itself when the size already matches (bilinear at scale 1 is the identity).
    The weights take ``x``'s dtype and device; under autocast the products run in its dtype.
    """
    if x.dim() != 4:
        raise ValueError(f'resize_bilinear_matmul takes (N, C, H, W), got shape {tuple(x.shape)}')
    out_h, out_w = (int(s) for s in size)
    in_h, in_w = x.shape[-2:]
    if (out_h, out_w) == (in_h, in_w):
        return x
    dtype = x.dtype if x.is_floating_point() else torch.float32
    weights_h = device_bilinear_weights(out_h, in_h, align_corners, x.device, dtype)
    weights_w = device_bilinear_weights(out_w, in_w, align_corners, x.device, dtype)
    return torch.matmul(weights_h, torch.matmul(x, weights_w.t()))


@lru_cache(maxsize=32)
def device_bilinear_weights(out_size, in_size, align_corners, device, dtype):
    """``bilinear_weights`` on ``device`` in ``dtype``, built and copied once per shape, not per
    training step."""
    return bilinear_weights(out_size, in_size, align_corners).to(device, dtype)
