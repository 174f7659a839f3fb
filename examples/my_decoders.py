# examples/my_decoders.py
import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class TokenMLPHead(BaseDecodeHead):
    """1x1 conv + GELU per token, then conv_seg (BaseDecodeHead's dropout + 1x1 classifier)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = nn.Sequential(nn.Conv2d(self.in_channels, self.channels, 1), nn.GELU())

    def forward(self, inputs):
        return self.cls_seg(self.hidden(self._transform_inputs(inputs)))
