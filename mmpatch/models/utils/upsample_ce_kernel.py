"""Triton kernel of ``upsample_cross_entropy``: one program per image row.

Input ``rows`` (N, C, H, w): the logits already interpolated along H. A program loads its row's
(C, w) source tile once, then for each block of BLOCK_X output columns builds their (C, BLOCK_X)
logits as one product with the W-interpolation weights ``wx`` (W, w), takes the loss, the
argmax and the loss's gradient (softmax - one-hot at labelled pixels), and accumulates the
gradient's product with ``wx`` into a (C, w) tile: the row's gradient w.r.t. ``rows``, stored
once at the end (no atomics: no other program touches the row). Writes the row's loss sum and
correct-pixel count. ``DOT_PRECISION``: Triton's ``input_precision`` of both products
('ieee': fp32 FMAs; 'tf32': tensor cores, inputs rounded to 10 mantissa bits).
"""
import triton
import triton.language as tl


@triton.jit
def upsample_ce_kernel(rows_ptr, label_ptr, wx_ptr, grad_rows_ptr, loss_ptr, correct_ptr,
                       C, H, W, w, ignore_index,
                       BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_X: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    row = tl.program_id(0)  # n * H + y
    cs = tl.arange(0, BLOCK_C)
    in_c = cs < C
    ks = tl.arange(0, BLOCK_W)
    tile = in_c[:, None] & (ks < w)[None, :]
    offsets = (row // H) * C * H * w + (row % H) * w + cs[:, None] * (H * w) + ks[None, :]
    source = tl.load(rows_ptr + offsets, mask=tile, other=0.0)  # (BLOCK_C, BLOCK_W)
    grad_source = tl.zeros((BLOCK_C, BLOCK_W), dtype=tl.float32)
    loss_sum = tl.zeros((BLOCK_X,), dtype=tl.float32)
    correct_sum = tl.zeros((BLOCK_X,), dtype=tl.int32)
    for x0 in range(0, W, BLOCK_X):
        xs = x0 + tl.arange(0, BLOCK_X)
        in_x = xs < W
        # wx is (W, BLOCK_W), zero beyond column w
        wx = tl.load(wx_ptr + xs[:, None] * BLOCK_W + ks[None, :], mask=in_x[:, None], other=0.0)
        z = tl.dot(source, tl.trans(wx), input_precision=DOT_PRECISION)  # (BLOCK_C, BLOCK_X)
        z = tl.where(in_c[:, None], z, float('-inf'))
        z_max = tl.max(z, axis=0)
        e = tl.exp(z - z_max[None, :])
        e_sum = tl.sum(e, axis=0)
        label = tl.load(label_ptr + row * W + xs, mask=in_x, other=ignore_index).to(tl.int32)
        valid = in_x & (label != ignore_index)
        is_label = cs[:, None] == label[None, :]
        z_label = tl.sum(tl.where(is_label, z, 0.0), axis=0)
        loss_sum += tl.where(valid, z_max + tl.log(e_sum) - z_label, 0.0)
        correct_sum += (valid & (tl.argmax(z, axis=0) == label)).to(tl.int32)
        grad = e / e_sum[None, :] - is_label.to(tl.float32)
        grad = tl.where(valid[None, :] & in_c[:, None], grad, 0.0)
        grad_source += tl.dot(grad, wx, input_precision=DOT_PRECISION)  # (BLOCK_C, BLOCK_W)
    tl.store(grad_rows_ptr + offsets, grad_source, mask=tile)
    tl.store(loss_ptr + row, tl.sum(loss_sum, axis=0))
    tl.store(correct_ptr + row, tl.sum(correct_sum, axis=0))
