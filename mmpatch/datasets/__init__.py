"""Datasets: the toy scene generator, the toy seg dataset, ADE20K and COCO with per-sample checks,
the stacking collate function and faster drop-ins for two mmseg training transforms."""
from .toy_seg import ToySegDataset  # noqa: F401
from .checked_ade20k import CheckedADE20KDataset  # noqa: F401
from .checked_coco import CheckedCocoDataset  # noqa: F401
from .sample_checks import DataError  # noqa: F401
from .stack_seg_collate import stack_seg_collate  # noqa: F401
from .transforms import FastPhotoMetricDistortion, FastRandomCrop  # noqa: F401
