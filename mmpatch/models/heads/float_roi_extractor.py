"""mmdet's SingleRoIExtractor, pooling in float32 when the maps are bfloat16 (bf16 autocast)."""
import torch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS


@MODELS.register_module()
class FloatSingleRoIExtractor(SingleRoIExtractor):
    """``SingleRoIExtractor`` that casts bfloat16 feature maps to float32 before RoIAlign.

    Under bf16 autocast the pyramid maps are bfloat16, which mmcv's RoIAlign
    kernels (CPU and CUDA, mmcv <= 2.2) do not implement; mmdet's extractor
    would also cast the RoI boxes to the maps' dtype (bf16 rounds coordinates
    to multiples of 4 px above 512, of 8 px above 1024). Here the maps are cast to float32 (the
    RoIs stay float32) and the pooled features come out float32; the heads
    after it run under autocast as usual. Other dtypes pass through unchanged.
    Same arguments as ``SingleRoIExtractor``.
    """

    def forward(self, feats, rois, roi_scale_factor=None):
        if feats[0].dtype == torch.bfloat16:
            feats = tuple(f.float() for f in feats)
            rois = rois.float()
        return super().forward(feats, rois, roi_scale_factor)
