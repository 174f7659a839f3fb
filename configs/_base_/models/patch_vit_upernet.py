# Plain ViT (DeiT) at patch size p + UperNet, as mmseg's upernet_vit-b16 (out_indices
# (2, 5, 8, 11), UPerHead channels 512, auxiliary FCNHead on the stride-32 level, SyncBN in the
# heads), with PatchPyramidNeck in place of MultiLevelNeck: block i's stride-p map is taken to
# stride (4, 8, 16, 32)[i] by learned 2x2 stride-2 (transposed) convs, LN2d + GELU between,
# plus an exact bilinear resize only if p / stride is not a power of two. out_channels=None:
# the levels keep the backbone width (UPerHead's own 1x1 laterals and 3x3 convs follow, as
# BEiT/MAE + UperNet in mmseg). mmseg's UPerHead is used unchanged.
# A leaf config sets arch, patch_size (= neck in_stride), the widths, with_cp and test_cfg
# (see tools/misc/make_ade20k_configs.py). No pretrained weights by default: set
# model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH).
# custom_imports=dict(imports=['mmpatch']) is set by the leaf configs, not here: the toy dataset
# base sets it too, and mmengine forbids one key in two _base_ files.
# No auxiliary head: model = dict(auxiliary_head=None).
# Size (p16, ADE20K): neck 9.4M + UPerHead 32.3M + aux 1.8M for B (768), 1.1 + 28.1 + 0.6M
# for T (256): mmseg's head, much larger than the paper's UperNet (13M for B, ~5M for T; its
# settings are not given). The neck grows as p shrinks (learned 2x steps): 33M for B at p1.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='PatchViT',
        arch='base',
        patch_size=16,
        img_size=512,  # training crop: stored position grid min(512 / p, 64)^2, resampled per input
        out_indices=(2, 5, 8, 11),  # one block per pyramid level (final norm on block 11 only)
        final_norm=True,
        drop_path_rate=0.1,  # mmseg's DeiT-S/B + UperNet rate
        with_cp=False,
        init_cfg=None),
    neck=dict(
        type='PatchPyramidNeck',
        in_channels=[768, 768, 768, 768],
        in_stride=16,
        out_strides=(4, 8, 16, 32),
        out_channels=None,
        downsample='conv',
        norm_cfg=dict(type='LN2d')),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=3,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
