# Toy recipe for the toy-size segmentation configs (configs/toy/*_t_p*_{linear,upernet}.py):
# the toy seg set + the toy schedule (./schedules/toy_seg.py: 400 iterations, heads at 10x lr)
# on a CPU: fp32, no AMP, training on random 32x32 crops of the 64x64 images, batch 8, at every
# patch size: p=1 then has 1,024 tokens per crop (64x64 crops would cost ~13x more at p=1 for
# ViT). Leaves evaluate with sliding 32x32 windows (stride 21), the training crop's token count.
_base_ = ['./datasets/toy_seg.py', './schedules/toy_seg.py']
crop_size = (32, 32)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
