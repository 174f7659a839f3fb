# Toy detection recipe for one GPU (configs/toy_det_gpu/*: small-size backbones): the CPU
# recipe (./toy_det_recipe.py: the 128 px toy COCO set, AdamW 1e-3 from scratch, warm-up then
# linear decay) with
# - batch 16, two loader workers per run (several runs share one GPU and its host's cores);
# - bf16 autocast for training (AmpOptimWrapper, as configs/coco; the model base's float32
#   proposal and RoI heads keep mmcv's NMS and RoIAlign in float32); validation and test in
#   float32, as configs/coco;
# - this length, validation (bbox + segm AP on the 100 val images) every quarter of the run and
#   one checkpoint at the end. Not yet shown converged: the CPU recipe's p2 cell still gained
#   3 bbox AP in the last quarter of 1,800 batches of 4 (docs/detection.md).
_base_ = './toy_det_recipe.py'
max_iters = 600
warmup_iters = 50
train_dataloader = dict(batch_size=16, num_workers=2, persistent_workers=True)
val_dataloader = dict(num_workers=2, persistent_workers=True)
test_dataloader = val_dataloader
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 4)
default_hooks = dict(checkpoint=dict(interval=max_iters))
