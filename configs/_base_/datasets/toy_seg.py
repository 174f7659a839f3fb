# Toy segmentation set: python tools/data/make_toy.py seg --out data/toy_seg
# ADE20K layout, PNG images, reduce_zero_label (file value 0 = unlabelled -> 255).
# No resizing anywhere: the set's 1-3 px strokes are the point, do not blur them.
# Another folder: --cfg-options {train,val,test}_dataloader.dataset.data_root=PATH
# (all three: a variable changed here does not reach the dicts below after loading).
custom_imports = dict(imports=['mmpatch'], allow_failed_imports=False)  # registers ToySegDataset
dataset_type = 'ToySegDataset'
data_root = 'data/toy_seg'
num_classes = 8  # = make_toy.py --num-classes; the dataset checks it against meta.json
crop_size = (64, 64)  # = make_toy.py --img-size (a smaller crop also works)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        num_classes=num_classes,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    num_classes=num_classes,
    data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
    pipeline=test_pipeline)
# Validation during training (the convergence curve) reads the first val_subset images only:
# cheap, and the same images at every validation. The test reads the whole split.
val_subset = 25
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(val_dataset, indices=val_subset))
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=val_dataset)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
# tools/sweep.py tests its cells with PerImageIoUMetric (mmpatch/evaluation/: the same metrics
# plus each image's class areas, for the bootstrap over validation images).
test_evaluator = val_evaluator
