"""Triton kernel of ``upsample_cross_entropy``: one program per BLOCK_X output pixels of a row.

Input ``rows`` (N, CP, H, w): the logits already interpolated along H, classes padded to CP (a
multiple of BLOCK_C) with a large negative value, so no class needs a mask. The block's output
pixels read source columns ``k0 .. k0 + BLOCK_K`` only (the bilinear taps of BLOCK_X pixels), so
each chunk of BLOCK_C classes is one (BLOCK_K, BLOCK_C) load, interpolated along W by one
product with the (BLOCK_X, BLOCK_K) weights into (pixels, classes) logits: pixels on the
product's rows, so the reductions over classes stay within each warp. Exponentials are exp2 of
one fused multiply-add (z * log2(e) - max * log2(e)). Classes are visited twice: first for the
log-sum-exp and the argmax (online, as flash attention's softmax; the label's logit is read from
its two source columns), then for the softmax, reduced onto the same source columns by the
transposed product with the weights of the pixels not ignored and added into ``grad_rows`` at the
columns the block reads (atomics: neighbouring blocks share a column); the one-hot part of the
gradient is added per pixel at its label, two atomics. Writes the block's loss sum and
correct-pixel count. ``DOT_PRECISION``: Triton's ``input_precision`` of the products ('ieee':
fp32 FMAs; 'tf32': tensor cores, inputs rounded to 10 mantissa bits).
"""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def upsample_ce_kernel(rows_ptr, label_ptr, lo_ptr, hi_ptr, a_ptr, b_ptr, k0_ptr,
                       grad_rows_ptr, loss_ptr, correct_ptr, C, CP, H, W, w, ignore_index,
                       BLOCK_C: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_K: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    row = tl.program_id(0)  # n * H + y
    block = tl.program_id(1)
    n, y = row // H, row % H
    xs = block * BLOCK_X + tl.arange(0, BLOCK_X)
    in_x = xs < W
    lo = tl.load(lo_ptr + xs, mask=in_x, other=0)
    hi = tl.load(hi_ptr + xs, mask=in_x, other=0)
    a = tl.load(a_ptr + xs, mask=in_x, other=0.0)
    b = tl.load(b_ptr + xs, mask=in_x, other=0.0)
    label = tl.load(label_ptr + row * W + xs, mask=in_x, other=ignore_index).to(tl.int32)
    valid = in_x & (label != ignore_index)
    labelled = valid & (label >= 0) & (label < C)
    plane = H * w  # elements per class of rows and grad_rows
    base = n * CP * plane + y * w  # element (n, 0, y, 0)

    k0 = tl.load(k0_ptr + block)
    ks = k0 + tl.arange(0, BLOCK_K)
    # (BLOCK_X, BLOCK_K) interpolation weights of the block's source columns (lo == hi at edges)
    wx = tl.where(ks[None, :] == lo[:, None], a[:, None], 0.0) + \
        tl.where(ks[None, :] == hi[:, None], b[:, None], 0.0)
    wx = tl.where(in_x[:, None], wx, 0.0)
    in_k = ks <= tl.max(tl.where(in_x, hi, 0), axis=0)  # the columns the block reads

    m = tl.full((BLOCK_X,), float('-inf'), tl.float32)  # running max
    s = tl.zeros((BLOCK_X,), dtype=tl.float32)  # running sum of exp(z - m)
    best_c = tl.zeros((BLOCK_X,), dtype=tl.int32)
    for c0 in range(0, CP, BLOCK_C):
        z = _logits(rows_ptr, base, c0, ks, in_k, wx, plane, BLOCK_C, DOT_PRECISION)
        chunk_max, chunk_arg = tl.max(z, axis=1, return_indices=True)  # ties: the first class
        best_c = tl.where(chunk_max > m, c0 + chunk_arg.to(tl.int32), best_c)
        m_new = tl.maximum(m, chunk_max)
        s = s * tl.exp2((m - m_new) * LOG2E) + \
            tl.sum(tl.exp2(z * LOG2E - (m_new * LOG2E)[:, None]), axis=1)
        m = m_new
    lse = m + tl.log(s)
    # the label's logit from its two source columns (fp32), not by a reduction over classes
    at = rows_ptr + base + tl.where(labelled, label, 0) * plane
    z_label = a * tl.load(at + lo, mask=labelled, other=0.0) + \
        b * tl.load(at + hi, mask=labelled, other=0.0)
    out = row * tl.num_programs(1) + block
    tl.store(loss_ptr + out, tl.sum(tl.where(valid, lse - z_label, 0.0), axis=0))
    tl.store(correct_ptr + out, tl.sum((valid & (best_c == label)).to(tl.int32), axis=0))

    # gradient = softmax - one-hot, at the pixels with a label: the softmax chunk by chunk ...
    wt = tl.trans(tl.where(valid[:, None], wx, 0.0))  # (BLOCK_K, BLOCK_X)
    for c0 in range(0, CP, BLOCK_C):
        z = _logits(rows_ptr, base, c0, ks, in_k, wx, plane, BLOCK_C, DOT_PRECISION)
        softmax = tl.exp2(z * LOG2E - (lse * LOG2E)[:, None])
        grad_k = tl.dot(wt, softmax, input_precision=DOT_PRECISION)  # (BLOCK_K, BLOCK_C)
        cs = c0 + tl.arange(0, BLOCK_C)
        tl.atomic_add(grad_rows_ptr + base + cs[None, :] * plane + ks[:, None], grad_k,
                      mask=in_k[:, None], sem='relaxed')
    # ... the one-hot at each labelled pixel's two source columns
    at = grad_rows_ptr + base + tl.where(labelled, label, 0) * plane
    tl.atomic_add(at + lo, -a, mask=labelled, sem='relaxed')
    tl.atomic_add(at + hi, -b, mask=labelled, sem='relaxed')


@triton.jit
def _logits(rows_ptr, base, c0, ks, in_k, wx, plane, BLOCK_C: tl.constexpr,
            DOT_PRECISION: tl.constexpr):
    """(BLOCK_X, BLOCK_C) logits of classes ``c0 ..`` at the block's pixels."""
    cs = c0 + tl.arange(0, BLOCK_C)
    source = tl.load(rows_ptr + base + cs[None, :] * plane + ks[:, None], mask=in_k[:, None],
                     other=0.0)  # (BLOCK_K, BLOCK_C)
    return tl.dot(wx, source, input_precision=DOT_PRECISION)
