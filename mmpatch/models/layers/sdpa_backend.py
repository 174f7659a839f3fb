"""Which ``scaled_dot_product_attention`` kernel runs: a pure choice rule and its context.

PyTorch's SDPA dispatches to one of several kernels (cuDNN, FlashAttention-2,
memory-efficient, math; on the CPU a flash kernel or math). Which is fastest
depends on the GPU, dtype and head size; ``choose_sdpa_backends`` encodes what
``tools/analysis/benchmark.py --sections sdpa`` measured (bf16, head_dim 64,
1k..262k tokens on Hopper: cuDNN fastest, then flash, then memory-efficient)
as an ordered preference list, and ``sdpa_backend_context`` makes PyTorch
follow it. Every list ends with a kernel that always runs (math), so 'auto'
never fails on a shape that the preferred kernel does not support.
"""
import contextlib

import torch

from ...utils.torch_state import set_sdpa_state, sdpa_state

ATTN_BACKENDS = ('auto', 'default', 'cudnn', 'flash', 'efficient', 'math')
_SDP_NAMES = dict(cudnn='CUDNN_ATTENTION', flash='FLASH_ATTENTION',
                  efficient='EFFICIENT_ATTENTION', math='MATH')
_FLAG_NAMES = dict(cudnn='cudnn', flash='flash', efficient='mem_efficient', math='math')
_HALF = (torch.float16, torch.bfloat16)


def choose_sdpa_backends(device_type, dtype, head_dim, capability=None):
    """Kernel names in order of preference for one attention call (a pure function).

    Args:
        device_type: 'cuda', 'cpu', ...
        dtype: the dtype the attention runs in (the autocast dtype under autocast).
        head_dim: channels per head.
        capability: CUDA compute capability ``(major, minor)``; ignored off CUDA.

    Returns a tuple of names from ``('cudnn', 'flash', 'efficient', 'math')``
    whose last entry is 'math' (always runs).
    """
    if device_type != 'cuda':
        return ('flash', 'math')  # the CPU flash kernel takes every float dtype
    if dtype not in _HALF:
        return ('efficient', 'math')  # cuDNN and flash need fp16 / bf16
    major = capability[0] if capability else 0
    fits_fused = head_dim % 8 == 0 and head_dim <= 128
    if major >= 9 and fits_fused:  # Hopper: cuDNN's attention beats FA2 by ~1.5x
        return ('cudnn', 'flash', 'efficient', 'math')
    if major >= 8 and fits_fused:
        return ('flash', 'efficient', 'cudnn', 'math')
    return ('efficient', 'math')


def _attention_dtype(x):
    """The dtype attention on ``x`` runs in: autocast's when autocast is on (torch >= 2.4 API)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def resolve_sdpa_backends(backend, x, head_dim):
    """Names of the kernels to allow for attention on tokens ``x``; None for PyTorch's default."""
    if backend not in ATTN_BACKENDS:
        raise ValueError(f'attn_backend must be one of {ATTN_BACKENDS}, got {backend!r}')
    if backend == 'default':
        return None
    if backend != 'auto':
        return (backend,)
    if not x.is_cuda:
        return choose_sdpa_backends(x.device.type, x.dtype, head_dim)
    capability = torch.cuda.get_device_capability(x.device)
    return choose_sdpa_backends('cuda', _attention_dtype(x), head_dim, capability)


@contextlib.contextmanager
def sdpa_backend_context(names):
    """Context in which SDPA uses the first kernel of ``names`` that supports the call.

    ``None`` leaves PyTorch's own choice. One name is strict: SDPA raises if that
    kernel cannot run the call. On torch < 2.6 (no priority order) the list
    enables the kernels and PyTorch's fixed order picks among them.

    On exit (or an exception) SDPA's process-wide priority order and kernel flags are
    restored exactly as they were on entry, so the models around this one (a timm teacher,
    a head with attention) keep their own kernel choice. The settings are written
    directly rather than through ``torch.nn.attention.sdpa_kernel``, whose restore with
    ``set_priority=True`` is lossy for a kernel disabled on entry (see ``set_sdpa_state``).
    """
    if names is None:
        yield
        return
    from torch.nn.attention import SDPBackend
    missing = [n for n in names if not hasattr(SDPBackend, _SDP_NAMES[n])]
    if missing:
        raise ValueError(f'this torch ({torch.__version__}) has no SDPA backend {missing}; '
                         f"use attn_backend='auto'")
    saved_order, saved_flags = sdpa_state()
    order = [int(getattr(SDPBackend, _SDP_NAMES[n])) for n in names]
    if saved_order is not None:  # the chosen kernels first, the others after in their order
        order += [b for b in saved_order if b not in order]
    wanted = {_FLAG_NAMES[n] for n in names}
    try:
        set_sdpa_state(order if saved_order is not None else None,
                       {flag: flag in wanted for flag in saved_flags})
        yield
    finally:
        set_sdpa_state(saved_order, saved_flags)
