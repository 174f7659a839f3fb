"""Importing this package registers every mmpatch model in the mmseg and mmdet registries."""
from . import backbones, data_preprocessors, heads, necks, segmentors  # noqa: F401
