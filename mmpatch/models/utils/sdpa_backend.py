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
import inspect

import torch

ATTN_BACKENDS = ('auto', 'default', 'cudnn', 'flash', 'efficient', 'math')
_SDP_NAMES = dict(cudnn='CUDNN_ATTENTION', flash='FLASH_ATTENTION',
                  efficient='EFFICIENT_ATTENTION', math='MATH')
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


def sdpa_backend_context(names):
    """Context in which SDPA uses the first kernel of ``names`` that supports the call.

    ``None`` leaves PyTorch's own choice. One name is strict: SDPA raises if that
    kernel cannot run the call. On torch < 2.6 (no ``set_priority``) the list
    enables the kernels and PyTorch's fixed order picks among them.
    """
    if names is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    missing = [n for n in names if not hasattr(SDPBackend, _SDP_NAMES[n])]
    if missing:
        raise ValueError(f'this torch ({torch.__version__}) has no SDPA backend {missing}; '
                         f"use attn_backend='auto'")
    backends = [getattr(SDPBackend, _SDP_NAMES[n]) for n in names]
    if len(backends) > 1 and 'set_priority' in inspect.signature(sdpa_kernel).parameters:
        return sdpa_kernel(backends, set_priority=True)
    return sdpa_kernel(backends)
