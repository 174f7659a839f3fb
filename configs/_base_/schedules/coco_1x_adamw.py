# The paper's COCO recipe: AdamW, lr 1e-4, weight decay 0.05, 12 epochs (mmdet's 1x schedule:
# 500-iteration linear warm-up, lr x0.1 at epochs 8 and 11), total batch 16 (2 per GPU x 8).
# Layer-wise lr decay 0.7 is our choice (the paper states none): ViTDet's rate for 12-block
# ViT-B, used for every 12-block backbone here (ViT-T/B, Adventurer-T/B); override with
# optim_wrapper.paramwise_cfg.layer_decay_rate. bf16 autocast (AmpOptimWrapper needs a GPU).
# Includes mmdet's default runtime, whose default_hooks this file extends: checkpoints are written
# atomically (AtomicCheckpointHook: a kill during the save leaves the previous file whole) and
# training stops at the first NaN/inf loss (FiniteLossHook), naming the last good checkpoint;
# see docs/robustness.md.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py']
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    finite_loss=dict(type='FiniteLossHook'))
