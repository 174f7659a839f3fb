# Adventurer (Mamba-2) at patch size p + UperNet: the segmentor of ./patch_vit_upernet.py
# (PatchPyramidNeck + mmseg's UPerHead + auxiliary FCNHead, out_indices (2, 5, 8, 11)) with
# PatchMamba in place of PatchViT (same constructor arguments). Sizes and choices: see there
# and docs/segmentation.md. A leaf config sets arch, patch_size (= neck in_stride), the
# widths, with_cp and test_cfg.
_base_ = './patch_vit_upernet.py'
model = dict(backbone=dict(type='PatchMamba'))
