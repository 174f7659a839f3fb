# Mask R-CNN (cheaper than Cascade) on a plain Mamba-2 (Adventurer) backbone at patch size p:
# ./mask_rcnn_patch_vit.py (mmdet's detector with the ViTDet-style neck and the float32
# proposal and RoI pooling heads) with the backbone's type swapped; PatchMamba takes the same
# arch, patch_size, img_size, out_indices, drop_path_rate (0.1, as the ViT configs), with_cp
# and init_cfg. A leaf config sets arch, patch_size = neck in_stride, neck in_channels and
# with_cp (see tools/misc/make_coco_configs.py).
_base_ = './mask_rcnn_patch_vit.py'
model = dict(backbone=dict(type='PatchMamba'))
