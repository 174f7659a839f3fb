"""Triton kernel of ``upsample_cross_entropy``: one program per (image row, block of columns).

Input ``rows`` (N, C, H, w): the logits already interpolated along H. Each program builds the
(C, BLOCK_X) logits of its pixels from the two source columns of each pixel, and writes its
block's loss sum and correct-pixel count. The gradient of the unreduced loss w.r.t. those
logits (softmax - one-hot at labelled pixels) is summed in the block onto the SPAN source
columns it came from, then added into ``grad_rows`` (N, C, H, w): only the columns at a block's
edges are shared with a neighbouring program.
"""
import triton
import triton.language as tl


@triton.jit
def upsample_ce_kernel(rows_ptr, label_ptr, lo_ptr, hi_ptr, frac_ptr, grad_rows_ptr,
                       loss_ptr, correct_ptr, C, H, W, w, ignore_index,
                       BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr, SPAN: tl.constexpr):
    row = tl.program_id(0)  # n * H + y
    block = tl.program_id(1)
    xs = block * BLOCK_X + tl.arange(0, BLOCK_X)
    in_x = xs < W
    cs = tl.arange(0, BLOCK_C)
    in_c = cs < C
    lo = tl.load(lo_ptr + xs, mask=in_x, other=0)
    hi = tl.load(hi_ptr + xs, mask=in_x, other=0)
    frac = tl.load(frac_ptr + xs, mask=in_x, other=0.0)

    base = (row // H) * C * H * w + (row % H) * w  # element (n, 0, y, 0)
    class_offset = cs[:, None] * (H * w)
    both = in_c[:, None] & in_x[None, :]
    left = tl.load(rows_ptr + base + class_offset + lo[None, :], mask=both, other=0.0)
    right = tl.load(rows_ptr + base + class_offset + hi[None, :], mask=both, other=0.0)
    z = left * (1.0 - frac[None, :]) + right * frac[None, :]
    z = tl.where(in_c[:, None], z, float('-inf'))

    z_max = tl.max(z, axis=0)
    e = tl.exp(z - z_max[None, :])
    e_sum = tl.sum(e, axis=0)
    label = tl.load(label_ptr + row * W + xs, mask=in_x, other=ignore_index).to(tl.int32)
    valid = in_x & (label != ignore_index)
    is_label = cs[:, None] == label[None, :]
    z_label = tl.sum(tl.where(is_label, z, 0.0), axis=0)
    loss = tl.where(valid, z_max + tl.log(e_sum) - z_label, 0.0)
    correct = valid & (tl.argmax(z, axis=0) == label)
    out = row * tl.num_programs(1) + block
    tl.store(loss_ptr + out, tl.sum(loss, axis=0))
    tl.store(correct_ptr + out, tl.sum(correct.to(tl.int32), axis=0))

    grad = e / e_sum[None, :] - is_label.to(tl.float32)
    grad = tl.where(valid[None, :] & in_c[:, None], grad, 0.0)
    first = tl.min(tl.where(in_x, lo, 2147483647), axis=0)  # the block's leftmost source column
    for k in tl.static_range(SPAN):
        col = first + k
        weight = tl.where(lo == col, 1.0 - frac, 0.0) + tl.where(hi == col, frac, 0.0)
        weight = tl.where(in_x, weight, 0.0)
        part = tl.sum(grad * weight[None, :], axis=1)
        tl.atomic_add(grad_rows_ptr + base + cs * (H * w) + col, part, mask=in_c & (col < w))
