# Toy recipe for one GPU (configs/toy_gpu/*: small-size backbones): the toy seg set's own
# 64x64-crop pipeline (./datasets/toy_seg.py) on a larger set, with the toy schedule
# (./schedules/toy_seg.py: AdamW 1e-3, heads at 10x lr, warm-up + poly, 400 iterations):
# - data: python tools/data/make_toy.py seg --out data/toy_seg_128 --img-size 128 --num-train 400
#   (128x128 images, the same 8 classes and detail sizes), random 64x64 crops, batch 16;
# - bf16 autocast for training (AmpOptimWrapper), validation and test (AmpValLoop/AmpTestLoop);
# - leaves evaluate with sliding 64x64 windows (stride 43), the training crop's token count.
_base_ = ['./datasets/toy_seg.py', './schedules/toy_seg.py']
data_root = 'data/toy_seg_128'
train_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=True, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
test_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root))
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
val_cfg = dict(_delete_=True, type='AmpValLoop', dtype='bfloat16')
test_cfg = dict(_delete_=True, type='AmpTestLoop', dtype='bfloat16')
