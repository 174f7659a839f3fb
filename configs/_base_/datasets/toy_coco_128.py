# The toy detection grid's COCO set (configs/toy_det, configs/toy_det_gpu): 128x128 images,
# 6 shape classes, object sizes log-uniform in 3..40 px (as many per octave), wholly inside:
#   python tools/data/make_toy.py coco --out data/toy_coco_128 --img-size 128 --num-train 400 \
#       --num-val 100 --min-object-size 3 --max-object-size 40
# ./toy_coco.py with the folder and the image size changed.
_base_ = './toy_coco.py'
data_root = 'data/toy_coco_128/'
img_scale = (128, 128)  # = make_toy.py --img-size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # no-op at the generated size; sets scale_factor
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
