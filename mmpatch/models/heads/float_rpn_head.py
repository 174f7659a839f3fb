"""mmdet's RPNHead, decoding proposals in float32 when its outputs are bfloat16 (bf16 autocast)."""
import torch
from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS


@MODELS.register_module()
class FloatRPNHead(RPNHead):
    """``RPNHead`` that turns bfloat16 scores and deltas into float32 proposals.

    Under bf16 autocast the RPN's outputs are bfloat16, and mmdet builds the
    anchors for proposals in the outputs' dtype: bf16 anchor centres are
    rounded to multiples of 4 px above 512 and of 8 px above 1024, and mmcv's
    NMS kernels (CPU and CUDA) accept only float32 boxes. Here scores and
    deltas are cast to float32 before decoding, so anchors, boxes and NMS are
    float32 (the training losses are unchanged: mmdet computes their anchors
    in float32 anyway). Other dtypes pass through. Same arguments as ``RPNHead``.
    """

    def predict_by_feat(self, cls_scores, bbox_preds, *args, **kwargs):
        if cls_scores[0].dtype == torch.bfloat16:
            cls_scores = [s.float() for s in cls_scores]
            bbox_preds = [b.float() for b in bbox_preds]
        return super().predict_by_feat(cls_scores, bbox_preds, *args, **kwargs)
