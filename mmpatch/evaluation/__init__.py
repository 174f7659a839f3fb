"""Evaluation: mmseg's IoUMetric that also saves per-image areas (for bootstrap CIs)."""
from .per_image_iou_metric import PerImageIoUMetric  # noqa: F401
