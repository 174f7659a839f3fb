# Adventurer (Mamba-2) at patch size p + the paper's decoder-free head ("Decoder = None"):
# the ViT segmentor of ./patch_vit_linear.py with PatchMamba in place of PatchViT (same
# constructor arguments; drop path 0.1 as the ViT configs, the paper states none).
# A leaf config sets arch, patch_size, head in_channels, with_cp and test_cfg.
_base_ = './patch_vit_linear.py'
model = dict(backbone=dict(type='PatchMamba'))
