# configs/toy/vit_t_p8_linear.py with the fast data path (mmpatch/fast/), as
# configs/fast/vit_b_p16_linear_fast.py turns it on for ADE20K: runs on a CPU, gives the same
# losses as the stock config for the same seed (tests/test_fast_data_path.py).
_base_ = '../toy/vit_t_p8_linear.py'
custom_imports = dict(imports=['mmpatch', 'mmpatch.fast'], allow_failed_imports=False)
model = dict(type='HostLogEncoderDecoder', data_preprocessor=dict(type='StackedSegDataPreProcessor'))
train_pipeline = [  # the toy recipe's, RandomCrop swapped for its drop-in
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='FastRandomCrop', crop_size=(32, 32)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(collate_fn=dict(type='stack_seg_collate'), pin_memory=True,
                        dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(type='PrefetchBatchHook')]
