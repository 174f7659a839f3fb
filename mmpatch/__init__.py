"""mmpatch: plain ViT / Mamba backbones at any patch size for mmseg and mmdet."""
__version__ = '0.1.0'
