# configs/ade20k/vit_b_p16_linear.py with the fast data path (mmpatch/fast/): what it changes and
# its measured gain (ViT-B p16, batch 16, one H200) are in docs/segmentation.md ("Fast data path").
# Same batches, same losses; only when and where the work is done changes. Any seg config turns
# it on with the lines below its own `_base_` (mmengine forbids one key in two `_base_` files, so
# they cannot sit in a shared base beside the model and dataset bases); at p <= 4 the backbone is
# the whole step and the wing gains nothing measurable.
_base_ = '../ade20k/vit_b_p16_linear.py'
custom_imports = dict(imports=['mmpatch', 'mmpatch.fast'], allow_failed_imports=False)
# EncoderDecoder whose log values reach the host without waiting for the update; SegDataPreProcessor
# that takes stack_seg_collate's two-tensor batches (the two belong together).
model = dict(type='HostLogEncoderDecoder', data_preprocessor=dict(type='StackedSegDataPreProcessor'))
# mmseg's ADE20K training pipeline with its RandomCrop and PhotoMetricDistortion swapped for
# drop-ins with the same outputs for the same random state
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='FastRandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='FastPhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(collate_fn=dict(type='stack_seg_collate'), pin_memory=True,
                        dataset=dict(pipeline=train_pipeline))
# the next batch is loaded and preprocessed before this iteration's losses are read back
custom_hooks = [dict(type='PrefetchBatchHook')]
