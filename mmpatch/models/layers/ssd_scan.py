"""Mamba-2 state-space duality (SSD) scan in plain PyTorch, chunked.

For every head ``h`` and time ``t`` (state ``s_t`` of shape headdim x d_state)::

    s_t = exp(dt_t * A_h) * s_{t-1} + dt_t * x_t B_t^T
    y_t = s_t C_t + D_h * x_t

which is what mamba_ssm's ``mamba_chunk_scan_combined`` evaluates with Triton
kernels. The sequence is cut into chunks of ``Q`` tokens: inside a chunk the
recurrence is a masked (Q x Q) matrix product; the states at chunk ends are
passed on by the same matrix form applied (recursively) to the sequence of
chunks. Memory per head is O(L * Q + L / Q * headdim * d_state), never O(L^2),
and no Python loop runs over tokens or chunks. Q = 64 balances the two terms
for headdim = d_state = 64; the result does not depend on Q (up to rounding).
"""
import torch
import torch.nn.functional as F

from .autocast_off import autocast_off


def segsum(a):
    """Segment sums of log-decays: ``(..., T) -> (..., T, T)``.

    ``out[..., t, s] = a[s+1] + ... + a[t]`` for ``t >= s`` (0 on the diagonal)
    and ``-inf`` above it, so ``exp(out)`` is the causal decay matrix. Built
    by a masked cumsum rather than differences of one cumsum, which would lose
    the small sums next to large ones.
    """
    T = a.shape[-1]
    later = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)  # k > s
    terms = a.unsqueeze(-1).expand(*a.shape, T).masked_fill(~later, 0.)  # [k, s] = a[k] if k > s
    sums = terms.cumsum(-2)  # [t, s] = sum of a[k] for s < k <= t
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~causal, float('-inf'))


def decay_scan(log_decay, u, block=64):
    """Inclusive linear scan ``s_t = exp(log_decay_t) * s_{t-1} + u_t``, ``s_{-1} = 0``.

    ``log_decay``: (B, T, H); ``u``: (B, T, H, D). Returns ``s``: (B, T, H, D).
    Blocks of ``block`` steps are solved in matrix form; the block ends are
    scanned recursively (depth log_block(T)).
    """
    if block < 2:
        raise ValueError(f'block must be >= 2, got {block}')
    b, T, h = log_decay.shape
    if T <= block:
        weights = torch.exp(segsum(log_decay.transpose(1, 2)))  # (B, H, T, T)
        return torch.einsum('bhts,bshd->bthd', weights, u)
    pad = -T % block
    if pad:  # zero decay and zero input: the padded steps change nothing before them
        log_decay = F.pad(log_decay, (0, 0, 0, pad))
        u = F.pad(u, (0, 0, 0, 0, 0, pad))
    k = (T + pad) // block
    a = log_decay.reshape(b, k, block, h).permute(0, 3, 1, 2)  # (B, H, K, block)
    u = u.reshape(b, k, block, h, -1)
    local = torch.einsum('bhkts,bkshd->bkthd', torch.exp(segsum(a)), u)  # each block from zero
    cum = a.cumsum(-1)  # decay from a block's start to step t, inclusive
    ends = decay_scan(cum[..., -1].transpose(1, 2), local[:, :, -1], block)  # (B, K, H, D)
    carry = F.pad(ends[:, :-1], (0, 0, 0, 0, 1, 0))  # state entering each block
    s = local + torch.exp(cum).permute(0, 2, 3, 1).unsqueeze(-1) * carry.unsqueeze(2)
    return s.reshape(b, k * block, h, -1)[:, :T]


def ssd_chunked(x, dt, A, B, C, D=None, chunk_size=64):
    """Chunked SSD scan (see the module docstring).

    Args:
        x: (batch, L, nheads, headdim) inputs.
        dt: (batch, L, nheads) positive step sizes (softplus and bias already applied).
        A: (nheads,) negative decay rates.
        B, C: (batch, L, ngroups, d_state); head ``i`` uses group ``i // (nheads // ngroups)``.
        D: (nheads,) skip weights, or None.
        chunk_size: tokens per chunk ``Q``.

    Returns ``y`` like ``x``. Computed in float32 (float64 for float64 inputs)
    with autocast off, cast back to ``x.dtype``.
    """
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    if h % g:
        raise ValueError(f'nheads {h} is not a multiple of ngroups {g}')
    out_dtype = x.dtype
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with autocast_off(x.device.type):
        x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
        q, r = chunk_size, h // g
        pad = -l % q
        if pad:  # dt = 0 at padded steps: no decay, no input
            x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
            dt = F.pad(dt, (0, 0, 0, pad))
        c = (l + pad) // q
        x = x.reshape(b, c, q, g, r, p)
        dt = dt.reshape(b, c, q, g, r)
        B, C = B.reshape(b, c, q, g, n), C.reshape(b, c, q, g, n)
        a = (dt * A.reshape(g, r)).permute(0, 3, 4, 1, 2)  # log-decays (b, g, r, c, q)
        xdt = x * dt.unsqueeze(-1)

        # 1. Outputs from inputs of the same chunk: (C_t . B_s) * decay(s -> t) * x_s dt_s.
        seg = segsum(a)  # (b, g, r, c, q, q)
        cb = torch.einsum('bclgn,bcsgn->bgcls', C, B)
        y = torch.einsum('bgrcls,bcsgrp->bclgrp', torch.exp(seg) * cb.unsqueeze(2), xdt)

        # 2. Each chunk's own contribution to the state at its end.
        to_end = torch.exp(seg[..., -1, :]).permute(0, 3, 4, 1, 2).unsqueeze(-1)  # (b, c, q, g, r, 1)
        states = torch.einsum('bcsgn,bcsgrp->bcgrpn', B, xdt * to_end)

        # 3. Pass states across chunks: the state entering chunk j.
        cum = a.cumsum(-1)  # decay from the chunk start to t, inclusive
        chunk_decay = cum[..., -1].permute(0, 3, 1, 2).reshape(b, c, h)
        ends = decay_scan(chunk_decay, states.reshape(b, c, h, p * n), block=max(q, 2))
        entering = F.pad(ends[:, :-1], (0, 0, 0, 0, 1, 0)).reshape(b, c, g, r, p, n)

        # 4. Outputs from the entering state.
        from_start = torch.exp(cum).permute(0, 3, 4, 1, 2).unsqueeze(-1)  # (b, c, q, g, r, 1)
        y = y + torch.einsum('bclgn,bcgrpn->bclgrp', C, entering) * from_start
        if D is not None:
            y = y + x * D.to(dtype).reshape(g, r, 1)
        y = y.reshape(b, c * q, h, p)[:, :l]
    return y.to(out_dtype)
