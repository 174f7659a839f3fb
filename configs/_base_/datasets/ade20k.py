# ADE20K (ADEChallengeData2016, 150 classes, reduce_zero_label): mmseg's settings, 512x512 crops.
# Data: see mmseg's docs/en/user_guides/2_dataset_prepare.md (ADE20K), default folder below.
# Another folder: --cfg-options {train,val,test}_dataloader.dataset.data_root=PATH
# (all three: changing `data_root` in a child config does not reach the inherited dicts).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# mmseg's tta_pipeline loads annotations without reduce_zero_label: fix it for --tta.
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
