# Toy detection recipe for a CPU (configs/toy_det/*: toy-size backbones): the 128 px toy COCO
# set (./datasets/toy_coco_128.py) with the toy detection schedule (./schedules/toy_det_cpu.py:
# fp32, AdamW 1e-3 from scratch, warm-up then linear decay, layer decay off) at this length:
# - batch 4 full 128x128 images (about 16-32 objects each), no loader workers;
# - validation (bbox + segm AP on the 100 val images) every quarter of the run (the sweep
#   reads convergence from that curve) and one checkpoint at the end.
# 300 iterations exercise the grid end to end; they are far from converged (at p2, 3x and 6x
# this length still gained 8 bbox AP per doubling: docs/detection.md).
_base_ = ['./datasets/toy_coco_128.py', './schedules/toy_det_cpu.py']
max_iters = 300
warmup_iters = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 4)
default_hooks = dict(checkpoint=dict(interval=max_iters))
