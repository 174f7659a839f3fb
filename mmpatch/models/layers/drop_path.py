"""Stochastic depth with its rate held as a tensor, so one compiled graph serves every block."""
import torch
from torch import nn


class DropPath(nn.Module):
    """timm's ``DropPath``: in training, each sample's residual branch is dropped with
    probability ``drop_prob`` and kept samples are scaled by ``1 / (1 - drop_prob)``; identity
    in evaluation. The stochastic depth of both backbones (PatchViT, PatchMamba).

    The rate is a (non-persistent) buffer, not a Python float: ``torch.compile`` specialises on
    floats, so blocks whose rates differ (stochastic depth grows with depth) would each compile
    their own graph, and past dynamo's recompile limit (8) the remaining blocks (9-12 of ViT-B)
    would run eagerly. No state-dict entries, as timm's.
    """

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        if not 0. <= drop_prob < 1.:
            raise ValueError(f'DropPath drop_prob must be in [0, 1), got {drop_prob!r}')
        self.register_buffer('drop_prob', torch.tensor(float(drop_prob)), persistent=False)

    def forward(self, x):
        if not self.training:
            return x
        keep = 1. - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * (torch.bernoulli(keep.expand(shape)) / keep).to(x.dtype)

    def extra_repr(self):
        return f'drop_prob={float(self.drop_prob):.3f}'
