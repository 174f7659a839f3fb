# Toy segmentation schedule, shared by the CPU and GPU toy recipes (../toy_seg_recipe.py,
# ../toy_seg_gpu_recipe.py), on mmseg's default runtime:
# - AdamW from scratch (lr 1e-3, wd 0.01), 20-iteration linear warm-up then poly decay to 0,
#   400 iterations; validation every 100 (4 points of the convergence curve, on the
#   dataset base's val subset) and one checkpoint at the end.
# - heads at 10x the backbone's (and neck's) lr (head_lr_mult), for both decoders. From scratch
#   and this short, a head with normalised conv layers (UPerHead, FCNHead; BN, GN or LN alike)
#   otherwise stays on a plateau where it predicts only the large regions: at 1x lr, 200 or
#   1000 iterations, the toy UperNet got 0 IoU on every stroke/object class at every patch size;
#   with 10x it learns them (see docs/segmentation.md).
# - layer decay 1.0 (off); the constructor is kept so that toy runs use the same parameter
#   groups as ADE20K (no weight decay on norms, biases, pos_embed, cls_token).
_base_ = 'mmseg::_base_/default_runtime.py'
max_iters = 400
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0, head_lr_mult=10.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Checkpoints are written atomically (AtomicCheckpointHook: a kill during the save leaves the
# previous file whole) and training stops at the first NaN/inf loss (FiniteLossHook), naming
# the last good checkpoint; see docs/robustness.md.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=max_iters),
    finite_loss=dict(type='FiniteLossHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
