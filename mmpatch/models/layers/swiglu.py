"""SwiGLU MLP of Adventurer blocks: ``w3(silu(w1 x) * w2 x)``, every projection with bias."""
import torch.nn as nn
import torch.nn.functional as F


class SwiGLU(nn.Module):
    """Gated MLP with parameter names ``w1``, ``w2`` (in -> hidden) and ``w3`` (hidden -> out)."""

    def __init__(self, in_features, hidden_features, out_features=None):
        super().__init__()
        self.w1 = nn.Linear(in_features, hidden_features)
        self.w2 = nn.Linear(in_features, hidden_features)
        self.w3 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x):
        return self.w3(F.silu(self.w1(x)) * self.w2(x))
