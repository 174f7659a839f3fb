"""LayerNorm over the channels of an NCHW map, usable as ``norm_cfg=dict(type='LN2d')``."""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


# Registered in mmengine's root MODELS registry: mmcv's ``build_norm_layer`` looks
# names up in the current scope (mmseg / mmdet) and falls back to the root.
@MODELS.register_module('LN2d')
class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm`` over C of a (B, C, H, W) map (ConvNeXt / ViTDet ``LN2d``)."""

    _abbr_ = 'ln'  # layer name prefix used by mmcv's build_norm_layer / ConvModule

    def __init__(self, num_features, eps=1e-6, **kwargs):
        super().__init__(num_features, eps=eps, **kwargs)

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f'LayerNorm2d expects a (B, C, H, W) map, got shape {tuple(x.shape)}')
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2).contiguous()  # NCHW layout for ops that need it
