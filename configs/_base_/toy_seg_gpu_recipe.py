# Toy recipe for one GPU (configs/toy_gpu/*: small-size backbones): the CPU toy recipe
# (configs/_base_/toy_seg_recipe.py: AdamW 1e-3, head_lr_mult 10, warm-up + poly, 400
# iterations) on a larger toy set:
# - data: python tools/data/make_toy.py seg --out data/toy_seg_128 --img-size 128 --num-train 400
#   (128x128 images, the same 8 classes and detail sizes), random 64x64 crops, batch 16;
# - bf16 autocast for training (AmpOptimWrapper), validation and test (AmpValLoop/AmpTestLoop);
# - leaves evaluate with sliding 64x64 windows (stride 43), the training crop's token count.
_base_ = './toy_seg_recipe.py'
data_root = 'data/toy_seg_128'
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
val_cfg = dict(_delete_=True, type='AmpValLoop', dtype='bfloat16')
test_cfg = dict(_delete_=True, type='AmpTestLoop', dtype='bfloat16')
