# Plain ViT (DeiT) at patch size p + the paper's decoder-free head ("Decoder = None"):
# LinearHead = LayerNorm + one 1x1 conv from the last block's stride-p map to the classes;
# mmseg resizes the stride-p logits bilinearly to the label size (loss) / image size (predict).
# A leaf config sets arch, patch_size, head in_channels, with_cp and test_cfg
# (see tools/misc/make_ade20k_configs.py). No pretrained weights by default (the paper
# finetunes classification models pretrained at the same p): set
# model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH).
# custom_imports=dict(imports=['mmpatch']) is set by the leaf configs, not here: the toy dataset
# base sets it too, and mmengine forbids one key in two _base_ files.
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
        out_indices=-1,
        final_norm=True,
        drop_path_rate=0.1,  # mmseg's DeiT-S/B + UperNet rate
        with_cp=False,
        init_cfg=None),
    decode_head=dict(
        type='LinearHead',
        in_channels=768,
        in_index=-1,
        norm_cfg=dict(type='LN2d'),
        dropout_ratio=0.1,  # as UperHead's, so the two decoders differ only in their layers
        num_classes=150,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
