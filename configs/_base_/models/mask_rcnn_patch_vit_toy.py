# Mask R-CNN on a tiny ViT (64 dims, 4 blocks) for the 64x64 toy COCO set (6 shape classes,
# objects of 2..25 px): the COCO detector of mask_rcnn_patch_vit.py, 64 channels wide, with
# anchors of 8..128 px (scale 2 at strides 4..64) and fewer proposals and RoIs, so that it
# trains on a CPU. A leaf sets patch_size and neck in_stride.
_base_ = './mask_rcnn_patch_vit.py'
width = 64
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2), img_size=64,
                  drop_path_rate=0.),
    neck=dict(in_channels=64, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width,
                  anchor_generator=dict(scales=[2])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=6),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=6)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=50)))
