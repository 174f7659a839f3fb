"""Importing this package registers every mmpatch model in the mmseg and mmdet registries."""
from . import backbones, heads, necks  # noqa: F401
