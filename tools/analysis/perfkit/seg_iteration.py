"""``benchmark.py seg-iteration``: an mmseg training iteration against the backbone-only step.

For one segmentor (default: PatchViT-B p16, compiled blocks, + LinearHead, 150 classes,
512 x 512 crops, batch 16), each row's median time per iteration (CUDA events; the loader's
wait falls between events) and its ratio to the backbone step:

- ``loader``: the DataLoader alone (images/s it can deliver): worker processes run the ADE20K
  training pipeline of ``configs/_base_/datasets/ade20k.py`` on scenes decoded from memory;
- ``backbone``: the backbone alone on GPU-resident images (autocast bf16 forward, backward of
  a scalar, the schedule's fused AdamW step): the reference;
- ``segmentor``: mmseg's ``EncoderDecoder.train_step`` with ``SegDataPreProcessor`` and the
  ADE20K schedule's optimizer wrapper (``AmpOptimWrapper`` bf16, layer-decay groups), on one
  batch kept in pinned memory, the loss read back every iteration as mmengine's
  ``RuntimeInfoHook`` does; ``LinearHead``'s default loss (matmul resize);
- ``segmentor_mmseg_loss``: the same with ``LinearHead(fast_loss=False)`` (mmseg's
  ``loss_by_feat``: ``F.interpolate`` + top-k accuracy);
- ``end_to_end``: ``segmentor`` with a fresh batch from the DataLoader every iteration
  (mmengine's ``pseudo_collate``);
- ``end_to_end_stacked``: the same with the speed wing's batches (``stack_seg_collate`` +
  ``StackedSegDataPreProcessor``);
- ``end_to_end_stacked_fused``: the same with ``LinearHead(fast_loss='fused')``;
- ``end_to_end_stacked_fused_prefetch_host_log``: the same with the next batch taken and
  preprocessed before the loss is read (``PrefetchBatchHook``) and ``HostLogEncoderDecoder``'s
  training step.

A row that fails is recorded with its error and costs no other row. Writes
``seg_iteration.{csv,md}``; ``--profile`` adds ``seg_iteration_profile_<row>.txt`` for the
resident rows: wall and GPU-busy time per step and the ops with the most self GPU and CPU time.
"""
import argparse
import copy
import os
import time
import traceback

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import FUNCTIONS, init_default_scope
from torch.utils.data import DataLoader, Dataset

from mmpatch.models.backbones.plain_backbone import COMPILE_MODES
from .utils import device_name, markdown_table, median_step_seconds, profile_steps, write_csv

DATASET_CFG = 'configs/_base_/datasets/ade20k.py'
SCHEDULE_CFG = 'configs/_base_/schedules/ade20k_160k_adamw.py'
FILE_LOADERS = ('LoadImageFromFile', 'LoadAnnotations')
NUM_CLASSES = 150
FULL = dict(arch='base', patch_size=16, crop=512, batch=16, source_hw=(512, 683), num_sources=32,
            warmup=5, steps=40)
TINY = dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2), patch_size=8, crop=64, batch=2,
            source_hw=(64, 85), num_sources=4, warmup=1, steps=3)
PROFILED = ('backbone', 'segmentor', 'segmentor_mmseg_loss')


def segmentor_cfg(arch, patch_size, crop, compile_blocks):
    """PatchViT + LinearHead in mmseg's EncoderDecoder with ADE20K's data preprocessor."""
    embed_dims = arch['embed_dims'] if isinstance(arch, dict) else 768
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255, size=(crop, crop)),
        backbone=dict(type='PatchViT', arch=arch, patch_size=patch_size, img_size=crop,
                      drop_path_rate=0.1, compile_blocks=compile_blocks),  # as the configs
        decode_head=dict(type='LinearHead', in_channels=embed_dims, num_classes=NUM_CLASSES,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                          loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))


def train_pipeline(crop):
    """ADE20K's training transforms after the file loaders, for ``crop`` x ``crop`` crops."""
    pipeline = copy.deepcopy(Config.fromfile(DATASET_CFG).train_pipeline)
    if [t['type'] for t in pipeline[:2]] != list(FILE_LOADERS):
        raise ValueError(f'{DATASET_CFG}: expected the pipeline to start with {FILE_LOADERS}')
    pipeline = pipeline[2:]
    for t in pipeline:
        if 'crop_size' in t:  # RandomCrop or a drop-in
            t['crop_size'] = (crop, crop)
        if t['type'] == 'RandomResize':
            t['scale'] = (4 * crop, crop)  # ADE20K: (2048, 512)
    return pipeline


class InMemorySegDataset(Dataset):
    """Random scenes kept as encoded JPEG / PNG bytes; decoded and transformed per item."""

    def __init__(self, pipeline, source_hw, num_sources, length, seed=0):
        rng = np.random.default_rng(seed)
        h, w = source_hw
        self.images, self.labels = [], []
        for _ in range(num_sources):
            # Smooth colour fields + blocky labels: JPEG sizes and class maps like real scenes.
            small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
            label = cv2.resize(rng.integers(0, NUM_CLASSES + 1, (h // 32 + 1, w // 32 + 1),
                                            dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            self.images.append(cv2.imencode('.jpg', img)[1].tobytes())
            self.labels.append(cv2.imencode('.png', label)[1].tobytes())
        self.pipeline = Compose(pipeline)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        i = index % len(self.images)
        img = cv2.imdecode(np.frombuffer(self.images[i], np.uint8), cv2.IMREAD_COLOR)
        label = cv2.imdecode(np.frombuffer(self.labels[i], np.uint8), cv2.IMREAD_UNCHANGED)
        label = label.astype(np.int16) - 1  # reduce_zero_label: 0 (other) -> 255
        label[label < 0] = 255
        results = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                       gt_seg_map=label.astype(np.uint8), seg_fields=['gt_seg_map'],
                       reduce_zero_label=True, img_path=f'mem_{i}.jpg', seg_map_path=f'mem_{i}.png')
        return self.pipeline(results)


def _no_cv2_threads(_):
    cv2.setNumThreads(0)  # as mmengine's env_cfg: one thread per worker process


def make_loader(dataset, batch, workers, pin, collate_fn=pseudo_collate):
    extra = dict(persistent_workers=True, prefetch_factor=2, worker_init_fn=_no_cv2_threads) \
        if workers else {}
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                      pin_memory=pin, drop_last=True, collate_fn=collate_fn, **extra)


def loader_images_per_s(loader, batch, warm_batches, timed_batches):
    it = iter(loader)
    for _ in range(warm_batches):
        next(it)
    start = time.perf_counter()
    for _ in range(timed_batches):
        next(it)
    return timed_batches * batch / (time.perf_counter() - start)


def schedule_optim_cfg(cuda):
    """The ADE20K schedule's optimizer wrapper config (on CPU: fp32 ``OptimWrapper``)."""
    cfg = copy.deepcopy(Config.fromfile(SCHEDULE_CFG).optim_wrapper)
    if not cuda:  # AmpOptimWrapper needs a GPU
        cfg.update(type='OptimWrapper')
        for amp_only in ('dtype', 'loss_scale'):
            cfg.pop(amp_only, None)
        cfg.optimizer.pop('fused', None)
    return cfg


def backbone_step(backbone, batch, crop, device, optimizer_cfg):
    """Autocast forward, backward of a scalar, and the schedule's AdamW (same settings)."""
    images = torch.randn(batch, 3, crop, crop, device=device)
    kwargs = {k: v for k, v in optimizer_cfg.items() if k != 'type'}
    optimizer = torch.optim.AdamW(backbone.parameters(), **kwargs)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = backbone(images)[-1]
        out.float().mean().backward()
        optimizer.step()
    return step


def segmentor_step(model, optim_wrapper, next_batch, preprocessor, fast_loss=True,
                   prefetch=False, host_log=False):
    """``model.train_step`` with this data preprocessor and the head's ``fast_loss`` (both set
    on the model at each step: the rows share one model); the loss read back at the end of the
    step, as mmengine's RuntimeInfoHook does every iteration. ``prefetch``: as
    ``PrefetchBatchHook``, the next batch is taken and preprocessed before that read.
    ``host_log``: ``HostLogEncoderDecoder``'s training step."""
    from mmseg.registry import MODELS
    ahead = []
    train_step = MODELS.get('HostLogEncoderDecoder').train_step if host_log else \
        type(model).train_step

    def step():
        use(model, preprocessor, fast_loss)
        data = ahead.pop() if ahead else next_batch()
        log_vars = train_step(model, data, optim_wrapper)
        if prefetch:
            ahead.append(next_batch())
            with optim_wrapper.optim_context(model):
                preprocessor.prefetch(ahead[-1])
        log_vars['loss'].item()
    return step


def use(model, preprocessor, fast_loss):
    """Set the data preprocessor and the head's ``fast_loss`` on the model the rows share."""
    model.decode_head.fast_loss = fast_loss
    model.data_preprocessor = preprocessor


def loader_iter(dataset, batch, workers, device, collate_fn=pseudo_collate):
    """An iterator over a new loader (its workers start here)."""
    return iter(make_loader(dataset, batch, workers, device.type == 'cuda', collate_fn))


def end_to_end_seconds(model, optim_wrapper, it, workers, device, cfg, preprocessor,
                       **step_args):
    """Median ``train_step`` on fresh batches from ``it`` (a loader of ``workers`` workers;
    ``step_args``: ``segmentor_step``'s); the warm-up covers the workers' start (one batch
    each)."""
    step = segmentor_step(model, optim_wrapper, lambda: next(it), preprocessor, **step_args)
    return median_step_seconds(step, max(cfg['warmup'], workers), cfg['steps'], device)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='benchmark.py seg-iteration',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true', help='tiny model and crops (smoke test)')
    parser.add_argument('--workers', type=int, default=None,
                        help='DataLoader workers (default: CPU cores - 2, at most 14)')
    parser.add_argument('--batch', type=int, default=None)
    parser.add_argument('--no-compile', action='store_true', help='eager backbone blocks')
    parser.add_argument('--compile-mode', default='default', choices=COMPILE_MODES,
                        help="torch.compile mode of the blocks ('reduce-overhead': CUDA graphs)")
    parser.add_argument('--rows', nargs='*', metavar='WHAT',
                        help='time only these rows (the backbone row always runs: the reference)')
    parser.add_argument('--profile', action='store_true',
                        help=f'also profile 3 steps of each of {", ".join(PROFILED)}')
    parser.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/seg_iteration')
    return parser.parse_args(argv)


def build_segmentor(cfg, device, compile_blocks):
    import mmpatch.fast  # noqa: F401  (registers the speed wing's collate, preprocessor, segmentor)
    import mmpatch.models  # noqa: F401  (registers PatchViT and LinearHead)
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model_cfg = segmentor_cfg(cfg['arch'], cfg['patch_size'], cfg['crop'], compile_blocks)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    return model, model_cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(TINY if args.tiny else FULL)
    if args.batch:
        cfg['batch'] = args.batch
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    workers = args.workers if args.workers is not None else \
        (min(max((os.cpu_count() or 2) - 2, 1), 14) if not args.tiny else 0)
    compile_blocks = cuda and not args.no_compile and args.compile_mode
    model, model_cfg = build_segmentor(cfg, device, compile_blocks)
    from mmseg.registry import MODELS
    batch, crop = cfg['batch'], cfg['crop']
    optim_cfg = schedule_optim_cfg(cuda)
    optim_wrapper = build_optim_wrapper(model, optim_cfg)

    dataset = InMemorySegDataset(train_pipeline(crop), cfg['source_hw'], cfg['num_sources'],
                                 length=10 ** 7)
    loader = make_loader(dataset, batch, workers, pin=cuda)
    rows = [dict(what='loader', images_per_s=loader_images_per_s(
        loader, batch, warm_batches=max(workers, 1), timed_batches=max(2 * workers, 2)))]
    fixed = next(iter(loader))
    del loader  # its workers stop: each end-to-end row starts its own
    plain = model.data_preprocessor  # mmseg's SegDataPreProcessor, as built
    steps = dict(
        backbone=backbone_step(model.backbone, batch, crop, device, optim_cfg.optimizer),
        segmentor=segmentor_step(model, optim_wrapper, lambda: fixed, plain),
        segmentor_mmseg_loss=segmentor_step(model, optim_wrapper, lambda: fixed, plain,
                                            fast_loss=False))

    def add_row(what, time_it, **extra):
        """A row of ``time_it()`` seconds; False (and an error row) where it raised."""
        try:
            seconds = time_it()
        except Exception as err:  # noqa: BLE001  (recorded in the row and printed in full)
            if what == 'backbone':
                raise
            traceback.print_exc()  # one broken row must not cost the other rows of a run
            rows.append(dict(what=what, status=f'error: {type(err).__name__}: '
                                               f'{str(err).splitlines()[0][:150]}', **extra))
            return False
        rows.append(dict(what=what, ms_per_iter=seconds * 1e3, images_per_s=batch / seconds,
                         **extra))
        print(rows[-1], flush=True)
        return True

    def wanted(what):
        return what == 'backbone' or args.rows is None or what in args.rows
    for what, step in list(steps.items()):
        if not wanted(what) or not add_row(
                what, lambda: median_step_seconds(step, cfg['warmup'], cfg['steps'], device)):
            del steps[what]  # not profiled
    # the speed wing's pieces by their registered names
    stacked = dict(collate_fn=lambda: FUNCTIONS.get('stack_seg_collate'),
                   preprocessor=lambda: MODELS.build(dict(
                       model_cfg['data_preprocessor'],
                       type='StackedSegDataPreProcessor')).to(device))
    fused = dict(fast_loss='fused')
    end_to_end_rows = [  # (what, stacked batches, segmentor_step's arguments)
        ('end_to_end', False, {}),
        ('end_to_end_stacked', True, {}),
        ('end_to_end_stacked_fused', True, fused),
        ('end_to_end_stacked_fused_prefetch_host_log', True,
         dict(fused, prefetch=True, host_log=True))]
    for what, stack, step_args in end_to_end_rows:
        if not wanted(what):
            continue

        def time_it(stack=stack, step_args=step_args):
            collate_fn = stacked['collate_fn']() if stack else pseudo_collate
            preprocessor = stacked['preprocessor']() if stack else plain
            it = loader_iter(dataset, batch, workers, device, collate_fn)
            return end_to_end_seconds(model, optim_wrapper, it, workers, device, cfg,
                                      preprocessor, **step_args)
        add_row(what, time_it, workers=workers)
    reference = next(r['ms_per_iter'] for r in rows if r['what'] == 'backbone')
    for row in rows:
        row['time_vs_backbone'] = row['ms_per_iter'] / reference if 'ms_per_iter' in row else None
    meta = dict(device=device_name(device), batch=batch, crop=crop,
                patch_size=cfg['patch_size'], workers=workers, compile_blocks=compile_blocks,
                steps=cfg['steps'])
    for row in rows:
        row.update({k: v for k, v in meta.items() if k not in row})
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, 'seg_iteration.csv'), rows)
    text = markdown_table(rows, ['what', 'ms_per_iter', 'images_per_s', 'time_vs_backbone',
                                 'batch', 'workers', 'device'] + (
        ['status'] if any('status' in row for row in rows) else []))
    with open(os.path.join(args.out, 'seg_iteration.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    if args.profile:
        for what in PROFILED:
            if what in steps:
                print(profile_steps(steps[what], device, name=what, path=os.path.join(
                    args.out, f'seg_iteration_profile_{what}.txt')))
    return rows
