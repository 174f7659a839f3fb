"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` with the per-sample checks of ``sample_checks``."""
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from .sample_checks import SampleChecksMixin


@DATASETS.register_module()
class CheckedCocoDataset(SampleChecksMixin, CocoDataset):
    """COCO as in mmdet; a missing or undecodable image: ``DataError`` naming the file and the fix."""
