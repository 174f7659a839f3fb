"""Mamba-2 token mixer with mamba_ssm's parameters and state-dict keys, two implementations.

``Mamba2Mixer`` holds exactly the parameters of ``mamba_ssm.modules.mamba2.Mamba2``
in its default Adventurer configuration (no projection bias, conv bias,
per-head ``D``, gated RMSNorm with ``norm_before_gate=False``): ``in_proj.weight``,
``conv1d.{weight,bias}``, ``dt_bias``, ``A_log``, ``D``, ``norm.weight``,
``out_proj.weight``. Its forward runs either

- ``'mamba_ssm'``: mamba_ssm's Triton kernels (``mamba_chunk_scan_combined`` and
  the gated-RMSNorm kernel, the causal conv in PyTorch; or, when causal_conv1d
  is importable, the fused ``mamba_split_conv1d_scan_combined``), or
- ``'torch'``: plain PyTorch with the chunked SSD scan of ``ssd_scan.py``.

``impl='auto'`` picks mamba_ssm for CUDA inputs (not float64) when it
imports, PyTorch otherwise (warning once when CUDA is used without mamba_ssm). Checkpoints are
the same either way.
"""
import functools
import math
import warnings
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rms_norm import GatedRMSNorm
from .ssd_scan import ssd_chunked

IMPLS = ('auto', 'torch', 'mamba_ssm')
_NO_DT_LIMIT = (0.0, float('inf'))


_KERNELS = {}  # 'kernels' -> the namespace or the reason (filled once, by the first call)


def mamba_ssm_kernels():
    """mamba_ssm's kernels as a namespace, or the reason (a str) they cannot be imported.

    A plain dict cache, not ``lru_cache``: once filled, torch.compile reads it as a constant
    instead of tracing the import (PatchMamba fills it before it runs compiled blocks).
    """
    if 'kernels' not in _KERNELS:
        _KERNELS['kernels'] = _import_kernels()
    return _KERNELS['kernels']


def _import_kernels():
    try:
        from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
        from mamba_ssm.ops.triton.ssd_combined import (mamba_chunk_scan_combined,
                                                       mamba_split_conv1d_scan_combined)
    except ImportError as err:
        return f'mamba_ssm is not importable ({err})'
    try:
        import causal_conv1d  # noqa: F401  (needed by the fused conv + scan kernel)
        fused = True
    except ImportError:
        fused = False
    # Outside torch.compile's graphs: compiled blocks (PatchMamba's compile_blocks) break the
    # graph around each kernel and fuse what lies between.
    disable = torch.compiler.disable
    return SimpleNamespace(
        chunk_scan=disable(mamba_chunk_scan_combined), rmsnorm=disable(rmsnorm_fn),
        split_conv1d_scan=disable(mamba_split_conv1d_scan_combined) if fused else None)


@functools.lru_cache(maxsize=None)
def _warn_torch_fallback(reason):
    warnings.warn(f'Mamba2Mixer: CUDA input but {reason}; using the (slower, more memory '
                  f'hungry) PyTorch SSD scan. Install mamba-ssm for the Triton kernels.',
                  RuntimeWarning, stacklevel=3)


def set_mamba_impl(model, impl):
    """Set ``impl`` ('auto' | 'torch' | 'mamba_ssm') on every ``Mamba2Mixer`` in ``model``."""
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
    for module in model.modules():
        if isinstance(module, Mamba2Mixer):
            module.impl = impl


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer ``(B, L, d_model) -> (B, L, d_model)``; see the module docstring.

    Args:
        d_model: token width.
        d_state, d_conv, expand, headdim, ngroups, chunk_size: as mamba_ssm's ``Mamba2``.
        A_init_range, dt_min, dt_max, dt_init_floor, dt_limit: as mamba_ssm's ``Mamba2``.
        impl: 'auto' | 'torch' | 'mamba_ssm'.
        torch_chunk_size: chunk of the PyTorch scan (64 keeps its memory lowest
            for headdim = d_state = 64; the result does not depend on it).
    """

    def __init__(self, d_model, d_state=64, d_conv=4, expand=2, headdim=64, ngroups=1,
                 chunk_size=256, A_init_range=(1, 16), dt_min=0.001, dt_max=0.1,
                 dt_init_floor=1e-4, dt_limit=_NO_DT_LIMIT, impl='auto', torch_chunk_size=64):
        super().__init__()
        d_inner = expand * d_model
        if d_inner % headdim:
            raise ValueError(f'expand * d_model = {d_inner} is not a multiple of headdim {headdim}')
        nheads = d_inner // headdim
        if nheads % ngroups:
            raise ValueError(f'{nheads} heads are not a multiple of ngroups {ngroups}')
        if impl not in IMPLS:
            raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner, self.headdim, self.nheads, self.ngroups = d_inner, headdim, nheads, ngroups
        self.chunk_size, self.torch_chunk_size = chunk_size, torch_chunk_size
        self.dt_limit = tuple(dt_limit)
        self.impl = impl

        conv_dim = d_inner + 2 * ngroups * d_state
        # in_proj output order: [z, x, B, C, dt]
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(_inverse_softplus_dt_init(nheads, dt_min, dt_max, dt_init_floor))
        self.A_log = nn.Parameter(torch.empty(nheads).uniform_(*A_init_range).log())
        self.D = nn.Parameter(torch.ones(nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True
        self.norm = GatedRMSNorm(d_inner, group_size=d_inner // ngroups, eps=1e-5)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def resolved_impl(self, u):
        """The implementation ``forward(u)`` runs: 'torch' or 'mamba_ssm'."""
        if self.impl == 'torch' or (self.impl == 'auto' and (not u.is_cuda or
                                                             u.dtype == torch.float64)):
            return 'torch'  # the Triton kernels have no float64 version
        kernels = mamba_ssm_kernels()
        if isinstance(kernels, str):
            if self.impl == 'mamba_ssm':
                raise RuntimeError(f"Mamba2Mixer impl='mamba_ssm' but {kernels}; use impl='auto' "
                                   f"or 'torch', or install mamba-ssm")
            _warn_torch_fallback(kernels)
            return 'torch'
        if not u.is_cuda:
            raise RuntimeError("Mamba2Mixer impl='mamba_ssm' needs CUDA inputs; got "
                               f"{u.device}; use impl='auto' or 'torch'")
        return 'mamba_ssm'

    def forward(self, u):
        if self.resolved_impl(u) == 'mamba_ssm':
            return self._forward_mamba_ssm(u)
        return self._forward_torch(u)

    def _split(self, zxbcdt):
        conv_dim = self.d_inner + 2 * self.ngroups * self.d_state
        return torch.split(zxbcdt, [self.d_inner, conv_dim, self.nheads], dim=-1)

    def _conv(self, xBC):
        """Causal depthwise conv + SiLU over the sequence: (B, L, D) -> (B, L, D)."""
        out = self.conv1d(xBC.transpose(1, 2))[..., :xBC.shape[1]]  # keep the causal outputs
        return F.silu(out).transpose(1, 2).contiguous()

    def _heads(self, xBC):
        """Split the conv output into x (B, L, H, P), B and C (B, L, G, N)."""
        b, l, _ = xBC.shape
        gn = self.ngroups * self.d_state
        x, B, C = torch.split(xBC, [self.d_inner, gn, gn], dim=-1)
        return (x.reshape(b, l, self.nheads, self.headdim),
                B.reshape(b, l, self.ngroups, self.d_state), C.reshape(b, l, self.ngroups, self.d_state))

    def _forward_torch(self, u):
        z, xBC, dt = self._split(self.in_proj(u))
        x, B, C = self._heads(self._conv(xBC))
        dtype = torch.float64 if self.A_log.dtype == torch.float64 else torch.float32
        dt = F.softplus(dt.to(dtype) + self.dt_bias.to(dtype))
        if self.dt_limit != _NO_DT_LIMIT:
            dt = dt.clamp(*self.dt_limit)
        A = -torch.exp(self.A_log.to(dtype))
        y = ssd_chunked(x, dt, A, B, C, D=self.D, chunk_size=self.torch_chunk_size)
        y = self.norm(y.reshape(*u.shape[:-1], self.d_inner), z)
        return self.out_proj(y)

    def _forward_mamba_ssm(self, u):
        kernels = mamba_ssm_kernels()
        A = -torch.exp(self.A_log.float())
        limit = {} if self.dt_limit == _NO_DT_LIMIT else dict(dt_limit=self.dt_limit)
        zxbcdt = self.in_proj(u)
        if kernels.split_conv1d_scan is not None:
            return kernels.split_conv1d_scan(
                zxbcdt, self.conv1d.weight.squeeze(1), self.conv1d.bias, self.dt_bias, A,
                D=self.D, chunk_size=self.chunk_size, activation='silu',
                rmsnorm_weight=self.norm.weight, rmsnorm_eps=self.norm.eps,
                outproj_weight=self.out_proj.weight, outproj_bias=None, headdim=self.headdim,
                ngroups=self.ngroups, norm_before_gate=False, **limit)
        z, xBC, dt = self._split(zxbcdt)
        x, B, C = self._heads(self._conv(xBC))
        y = kernels.chunk_scan(x, dt, A, B, C, chunk_size=self.chunk_size, D=self.D, z=None,
                               dt_bias=self.dt_bias, dt_softplus=True, **limit)
        y = kernels.rmsnorm(y.reshape(*u.shape[:-1], self.d_inner), self.norm.weight, None, z=z,
                            eps=self.norm.eps, group_size=self.norm.group_size,
                            norm_before_gate=False)
        return self.out_proj(y)


def _inverse_softplus_dt_init(nheads, dt_min, dt_max, floor):
    """mamba_ssm's dt_bias init: softplus^-1 of dt ~ log-uniform in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))
