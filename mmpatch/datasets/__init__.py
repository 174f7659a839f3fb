"""Datasets: the toy scene generator, the toy seg dataset, ADE20K and COCO with per-sample checks."""
from .toy_seg import ToySegDataset  # noqa: F401
from .checked_ade20k import CheckedADE20KDataset  # noqa: F401
from .checked_coco import CheckedCocoDataset  # noqa: F401
from .sample_checks import DataError  # noqa: F401
