# Mask R-CNN for the toy detection grid (configs/toy_det, configs/toy_det_gpu) on the 128 px
# toy COCO set (../datasets/toy_coco_128.py: 6 shape classes, objects of 3..40 px): the COCO
# detector of ./mask_rcnn_patch_vit.py (mmdet's heads, the simple-pyramid neck at strides
# 4..64, 256 channels) with the anchors, proposal counts and classes of the toy set:
# - anchors of 4..128 px: scales 1 and 2 (x3 ratios) at strides 4..64. With scale 2 alone
#   (8..128 px) three quarters of the objects under 6 px have no anchor of IoU >= 0.3 (the
#   RPN's min_pos_iou), so they are never positives; with scales 1 and 2 a quarter have none.
# - RoIs: mmdet's level mapping (finest_scale 56) sends every RoI under 112 px to the stride-4
#   map, so the RoI heads pool every toy object from the stride-4 level; the RPN reads all five.
# - 300 proposals, 128 sampled RoIs and at most 100 detections per image (16-32 objects each).
# A cell (configs/_base_/toy_det_cells/) sets the arch, widths, out_indices and neck inputs;
# a leaf sets the patch size.
_base_ = './mask_rcnn_patch_vit.py'
num_classes = 6  # = ../datasets/toy_coco.py classes
model = dict(
    backbone=dict(img_size=128, drop_path_rate=0.0),
    rpn_head=dict(anchor_generator=dict(scales=[1, 2])),
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_head=dict(num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(max_per_img=100)))
