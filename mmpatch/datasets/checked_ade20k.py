"""``CheckedADE20KDataset``: mmseg's ``ADE20KDataset`` with the per-sample checks of ``sample_checks``."""
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

from .sample_checks import SampleChecksMixin


@DATASETS.register_module()
class CheckedADE20KDataset(SampleChecksMixin, ADE20KDataset):
    """ADE20K as in mmseg; a missing/undecodable file or a label outside the classes: ``DataError``."""
