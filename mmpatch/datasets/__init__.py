"""Datasets: the toy scene generator and the mmseg dataset class of its segmentation set."""
from .toy_seg import ToySegDataset  # noqa: F401
