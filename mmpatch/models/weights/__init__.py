"""Pretrained weights for the backbones: reading a checkpoint file, strict loading with key lists,
and the conversions of timm / DeiT ViT and official Adventurer weights, shared by the backbones'
``init_cfg`` loading and ``tools/model_converters/``."""
