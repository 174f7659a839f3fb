"""Registration helpers: one class, registered in every OpenMMLab registry that needs it."""
from mmdet.registry import MODELS as DET_MODELS
from mmseg.registry import MODELS as SEG_MODELS


def register_seg_det_model(cls):
    """Register ``cls`` in both the mmseg and the mmdet ``MODELS`` registry."""
    SEG_MODELS.register_module(module=cls)
    DET_MODELS.register_module(module=cls)
    return cls
