# Mask R-CNN (cheaper than Cascade) on a plain Mamba-2 (Adventurer) backbone at patch size p,
# with the ViTDet-style neck: mmdet's detector
# with only the backbone and the neck replaced. The neck turns the single stride-p map into
# the stride 4/8/16/32/64 maps (256 channels) that mmdet's RPN anchors and RoI extractors expect;
# heads (and their norm settings) are mmdet's. A leaf config sets arch, patch_size = neck
# in_stride, neck in_channels and with_cp (see tools/misc/make_coco_configs.py).
# No pretrained weights by default (the paper finetunes classification models pretrained
# at the same p); set model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmpatch'], allow_failed_imports=False)  # models, optim constructor
model = dict(
    backbone=dict(
        _delete_=True,
        type='PatchMamba',
        arch='base',
        patch_size=16,
        img_size=800,  # stored position grid min(ceil(800 / p), 64)^2, resampled per input
        out_indices=-1,
        drop_path_rate=0.1,  # as the ViT configs
        with_cp=False,
        init_cfg=None),
    neck=dict(
        _delete_=True,
        type='PatchPyramidNeck',
        in_channels=768,
        out_channels=256,
        in_stride=16,
        out_strides=(4, 8, 16, 32, 64),  # = rpn_head.anchor_generator.strides
        # 2x max pools where the stride grows (ViTDet); learned 2x2 convs would add
        # 2.4M params (ViT-B) per step, 35M at p2, and make the neck grow as p shrinks.
        downsample='pool'),
    # bf16 autocast: mmcv's NMS and RoIAlign have no bfloat16 kernels, and bf16 box
    # coordinates are coarse (8 px steps above 1024): proposals and RoI pooling in float32.
    rpn_head=dict(type='FloatRPNHead'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='FloatSingleRoIExtractor'),
        mask_roi_extractor=dict(type='FloatSingleRoIExtractor')))
