# Mask R-CNN, tiny ViT at patch 8x8 on the 64x64 toy COCO set, CPU (fp32), 300 iterations.
#   python tools/data/make_toy.py coco --out data/toy_coco
#   python tools/train.py configs/toy/vit_t_p8_mask_rcnn_toy.py
#   python tools/test.py configs/toy/vit_t_p8_mask_rcnn_toy.py work_dirs/vit_t_p8_mask_rcnn_toy/iter_300.pth
_base_ = [
    '../_base_/models/mask_rcnn_patch_vit_toy.py',
    '../_base_/datasets/toy_coco.py',
    '../_base_/schedules/toy_det_cpu.py',  # + mmdet's default runtime
]
patch_size = 8
model = dict(backbone=dict(patch_size=patch_size), neck=dict(in_stride=patch_size))
