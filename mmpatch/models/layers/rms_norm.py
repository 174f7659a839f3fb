"""Gated RMSNorm of the Mamba-2 mixer (mamba_ssm ``RMSNormGated`` semantics, plain PyTorch)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class GatedRMSNorm(nn.Module):
    """``RMSNorm(x * silu(z)) * weight``, normalised over groups of ``group_size`` channels.

    This is mamba_ssm's ``norm_before_gate=False`` (the Mamba2 default) with
    ``weight`` as its only parameter, so state dicts are interchangeable.
    Computed in float32 (float64 for float64 inputs), cast back to ``x.dtype``.
    """

    def __init__(self, hidden_size, group_size=None, eps=1e-5):
        super().__init__()
        self.group_size = group_size or hidden_size
        if hidden_size % self.group_size:
            raise ValueError(f'hidden_size {hidden_size} is not a multiple of group_size {self.group_size}')
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x, z):
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        gated = x.to(dtype) * F.silu(z.to(dtype))
        groups = gated.reshape(*gated.shape[:-1], -1, self.group_size)
        normed = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed.reshape(gated.shape) * self.weight.to(dtype)).to(x.dtype)
