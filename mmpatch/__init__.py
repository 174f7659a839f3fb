"""mmpatch: plain ViT / Mamba backbones at any patch size for mmseg and mmdet.

Importing it registers the models (mmseg + mmdet MODELS), the toy dataset
(mmseg DATASETS), the per-image IoU metric (mmseg METRICS) and the torch.load
allow-list for mmengine checkpoints. The opt-in fast data path registers on
``import mmpatch.fast`` (configs/fast/).
"""
__version__ = '0.1.0'

from . import engine, datasets, models, evaluation  # noqa: E402,F401
