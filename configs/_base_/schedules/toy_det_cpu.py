# Toy detection schedule (the toy COCO set, CPU): fp32, no AMP, AdamW from scratch, short
# linear warm-up then linear decay; validation (bbox + segm AP) and one checkpoint at the
# end. Layer decay 1.0 (off): the constructor is kept so that toy runs exercise it (no
# weight decay on norms, biases, pos_embed, cls_token). Includes mmdet's default runtime.
_base_ = 'mmdet::_base_/default_runtime.py'
max_iters = 300
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=30, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Checkpoints are written atomically (AtomicCheckpointHook: a kill during the save leaves the
# previous file whole) and training stops at the first NaN/inf loss (FiniteLossHook), naming
# the last good checkpoint; see docs/robustness.md.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=max_iters),
    finite_loss=dict(type='FiniteLossHook'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
