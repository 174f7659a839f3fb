"""Datasets: the toy scene generator and the mmseg dataset class of its segmentation set."""
from .toy_seg import ToySegDataset  # noqa: F401
from .checked_ade20k import CheckedADE20KDataset  # noqa: F401
from .sample_checks import DataError  # noqa: F401
