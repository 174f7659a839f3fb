"""Triton kernel of ``upsample_cross_entropy``: one program per BLOCK_X output pixels of a row.

Input ``rows`` (N, C, H, w): the logits already interpolated along H. The block's output pixels
read source columns ``k0 .. k0 + BLOCK_K`` only (the bilinear taps of BLOCK_X pixels), so each
chunk of BLOCK_C classes is one coalesced (BLOCK_C, BLOCK_K) load, interpolated along W by one
product with the (BLOCK_X, BLOCK_K) weights. Classes are visited twice: first for the
log-sum-exp and the argmax (online, as flash attention's softmax; the label's logit is read from
its two source columns), then for the gradient (softmax - one-hot at labelled pixels), reduced
onto the same source columns by the transposed product and added into ``grad_rows`` at the
columns the block reads (atomics: neighbouring blocks share a column). Writes the block's loss
sum and correct-pixel count. ``DOT_PRECISION``: Triton's ``input_precision`` of the products
('ieee': fp32 FMAs; 'tf32': tensor cores, inputs rounded to 10 mantissa bits).
"""
import triton
import triton.language as tl


@triton.jit
def upsample_ce_kernel(rows_ptr, label_ptr, lo_ptr, hi_ptr, a_ptr, b_ptr, k0_ptr,
                       grad_rows_ptr, loss_ptr, correct_ptr, C, H, W, w, ignore_index,
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
    base = n * C * H * w + y * w  # element (n, 0, y, 0) of rows and grad_rows

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
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        z = _logits(rows_ptr, base, cs, ks, in_k, wx, C, H, w, DOT_PRECISION)
        chunk_max, chunk_arg = tl.max(z, axis=0, return_indices=True)  # ties: the first class
        best_c = tl.where(chunk_max > m, c0 + chunk_arg.to(tl.int32), best_c)
        m_new = tl.maximum(m, chunk_max)
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new[None, :]), axis=0)
        m = m_new
    # the label's logit from its two source columns (fp32), not by a reduction over classes
    labelled = valid & (label >= 0) & (label < C)
    at = rows_ptr + base + tl.where(labelled, label, 0) * (H * w)
    z_label = a * tl.load(at + lo, mask=labelled, other=0.0) + \
        b * tl.load(at + hi, mask=labelled, other=0.0)
    lse = m + tl.log(s)
    out = row * tl.num_programs(1) + block
    tl.store(loss_ptr + out, tl.sum(tl.where(valid, lse - z_label, 0.0), axis=0))
    tl.store(correct_ptr + out, tl.sum((valid & (best_c == label)).to(tl.int32), axis=0))

    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        z = _logits(rows_ptr, base, cs, ks, in_k, wx, C, H, w, DOT_PRECISION)
        grad = tl.exp(z - lse[None, :]) - (cs[:, None] == label[None, :]).to(tl.float32)
        grad = tl.where((cs < C)[:, None] & valid[None, :], grad, 0.0)
        grad_k = tl.dot(grad, wx, input_precision=DOT_PRECISION)  # (BLOCK_C, BLOCK_K)
        tl.atomic_add(grad_rows_ptr + base + cs[:, None] * (H * w) + ks[None, :], grad_k,
                      mask=(cs < C)[:, None] & in_k[None, :], sem='relaxed')


@triton.jit
def _logits(rows_ptr, base, cs, ks, in_k, wx, C, H, w, DOT_PRECISION: tl.constexpr):
    """(BLOCK_C, BLOCK_X) logits of classes ``cs`` at the block's pixels; -inf beyond C."""
    in_c = cs < C
    source = tl.load(rows_ptr + base + cs[:, None] * (H * w) + ks[None, :],
                     mask=in_c[:, None] & in_k[None, :], other=0.0)  # (BLOCK_C, BLOCK_K)
    z = tl.dot(source, tl.trans(wx), input_precision=DOT_PRECISION)
    return tl.where(in_c[:, None], z, float('-inf'))
