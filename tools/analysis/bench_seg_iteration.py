"""An end-to-end mmseg training iteration against the backbone-only step, same run, same GPU.

Measures, for one segmentor (default: PatchViT-B p16, compiled blocks, + LinearHead,
150 classes, 512 x 512 crops, batch 16):

- ``backbone``: the backbone alone on GPU-resident images (autocast bf16 forward,
  backward of a scalar, fused AdamW step): the reference step;
- ``segmentor``: ``model.train_step`` (data preprocessor, backbone, head, loss,
  the ADE20K schedule's optimizer wrapper: ``AmpOptimWrapper`` bf16, layer-decay groups;
  the loss read back as mmengine's runtime-info hook does) on one batch kept in pinned
  memory: the iteration without the loader;
- ``segmentor_mmseg_loss``: the same with ``LinearHead(fast_loss=False)``, i.e. mmseg's
  ``BaseDecodeHead.loss_by_feat`` (``F.interpolate`` + top-k accuracy);
- ``segmentor_fused_loss``: the same with ``LinearHead(fast_loss='fused')`` (resize, loss and
  accuracy in one Triton kernel, ``upsample_cross_entropy``; on CPU the matmul path);
- ``end_to_end``: the same with a fresh batch from the DataLoader every
  iteration: worker processes run the ADE20K training pipeline of
  ``configs/_base_/datasets/ade20k.py`` (JPEG/PNG decode from memory instead of
  the disk, then RandomResize, FastRandomCrop, RandomFlip, FastPhotoMetricDistortion,
  PackSegInputs), pinned memory, mmengine's ``pseudo_collate``;
- ``loader``: the DataLoader alone (images/s it can deliver);
- ``end_to_end_w{N}`` (``--end-to-end-workers N ...``): ``end_to_end`` with N loader workers
  (the workers compete with the launch-bound main process for the CPU cores);
- ``segmentor_batch_on_gpu``: ``segmentor`` with the batch (images and the labels inside the
  data samples) already on the device: the host-to-device copies' share of the step;
- ``segmentor_one_group``: ``segmentor`` with one AdamW parameter group (mmengine's default
  constructor) instead of the schedule's layer-decay groups: the optimizer's host cost;
- ``segmentor_stacked`` / ``end_to_end_stacked``: ``segmentor`` / ``end_to_end`` with
  ``stack_seg_collate`` and ``StackedSegDataPreProcessor`` (the batch as two tensors, uint8
  labels, one normalisation and pad per batch) instead of ``pseudo_collate`` and mmseg's
  ``SegDataPreProcessor``;
- ``segmentor_stacked_fused`` / ``end_to_end_stacked_fused``: the stacked rows with
  ``LinearHead(fast_loss='fused')`` (the kernel's products on tensor cores for bf16 logits);
- ``segmentor_stacked_fused_prefetch`` / ``end_to_end_stacked_fused_prefetch``: the fused rows
  with the next batch taken and preprocessed before the loss is read (``PrefetchBatchHook``, the
  ADE20K configs' setting), so its host work overlaps the GPU's backward;
- ``*_prefetch_host_log``: the prefetch rows with ``HostLogEncoderDecoder``'s step (the ADE20K
  configs' segmentor): the log values copied to the host after the forward and waited for once
  the backward and the optimizer step are issued: no read that waits for the whole queue;
- ``end_to_end_file_system``: ``end_to_end`` with PyTorch's 'file_system' sharing strategy in
  the workers (a diagnosis: no file-descriptor round trip per tensor, at the cost of the leak
  risk PyTorch documents; not what the configs use).

Median per-iteration time (CUDA events; the loader wait falls between events)
and the ratio of each to the backbone step. Writes ``seg_iteration.{csv,md}``.

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && export PYTHONPATH=$PYTHONPATH:. && \
        python3 tools/analysis/bench_seg_iteration.py --out $OUT
CPU smoke test:
    python tools/analysis/bench_seg_iteration.py --device cpu --tiny --out /tmp/seg_iter
``--profile`` adds ``seg_iteration_profile{,_mmseg_loss,_fused_loss,_end_to_end,
_end_to_end_stacked}.txt``: over three steps of each, the wall and GPU-busy time per step and
the ops with the most self GPU time and with the most self CPU time (where the gap to the
backbone goes), and
``seg_iteration_profile_python.txt``: cProfile of the ``segmentor`` and ``end_to_end`` steps
(plain and stacked), the Python functions with the most time (which host code keeps the GPU
waiting); and ``seg_iteration_profile{_backbone,_stacked_fused}.txt``.
``--timeline`` adds ``seg_iteration_timeline.md``: for the backbone step and the stacked
segmentor steps, each phase's host time (issuing it) against its GPU time (CUDA events at the
same points), medians: a phase whose GPU time is about its host time kept the GPU waiting.
"""
import argparse
import copy
import os
import statistics
import time
import traceback

import cv2
import numpy as np
import torch
import torch.multiprocessing
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader, Dataset

from mmpatch.fast import stack_seg_collate, train_step_host_log
from mmpatch.models.backbones.patch_vit import COMPILE_MODES
from mmpatch.utils.benchmark import markdown_table, median_step_seconds, write_csv
from mmpatch.utils.gpu_trace import sync_points, trace_gaps

DATASET_CFG = 'configs/_base_/datasets/ade20k.py'
SCHEDULE_CFG = 'configs/_base_/schedules/ade20k_160k_adamw.py'
FILE_LOADERS = ('LoadImageFromFile', 'LoadAnnotations')
NUM_CLASSES = 150
FULL = dict(arch='base', patch_size=16, crop=512, batch=16, source_hw=(512, 683), num_sources=32,
            warmup=5, steps=40)
TINY = dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2), patch_size=8, crop=64, batch=2,
            source_hw=(64, 85), num_sources=4, warmup=1, steps=3)


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
        if t['type'] in ('RandomCrop', 'FastRandomCrop'):
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
    """Autocast forward, backward of a scalar, and the schedule's AdamW (same settings);
    ``step(mark)`` marks its phases (``phase_timeline``)."""
    images = torch.randn(batch, 3, crop, crop, device=device)
    kwargs = {k: v for k, v in optimizer_cfg.items() if k != 'type'}
    optimizer = torch.optim.AdamW(backbone.parameters(), **kwargs)

    def step(mark=lambda phase: None):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = backbone(images)[-1]
        mark('forward')
        out.float().mean().backward()
        mark('backward')
        optimizer.step()
        mark('optimizer')
    return step


def segmentor_step(model, optim_wrapper, next_batch, preprocessor, fast_loss=True,
                   prefetch=False, host_log=False):
    """``model.train_step`` with this data preprocessor and the head's ``fast_loss`` (both set
    on the model at each step: the rows share one model); the loss read back at the end of the
    step, as mmengine's RuntimeInfoHook does every iteration. ``prefetch``: as
    ``PrefetchBatchHook``, the next batch is taken and preprocessed before that read.
    ``host_log``: ``HostLogEncoderDecoder``'s step (``train_step_host_log``), the log values
    copied to the host after the forward and waited for once the update is issued."""
    ahead = []
    train_step = train_step_host_log if host_log else type(model).train_step

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


def train_step_phases(model, optim_wrapper, data, mark=lambda phase: None):
    """``BaseModel.train_step`` + the loss read, with ``mark(phase)`` after each phase; returns
    the log values."""
    with optim_wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        mark('preprocess')
        losses = model._run_forward(data, mode='loss')
        mark('forward_and_loss')
    loss, log_vars = model.parse_losses(losses)
    mark('parse_losses')
    optim_wrapper.backward(optim_wrapper.scale_loss(loss))
    mark('backward')
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    mark('optimizer')
    log_vars['loss'].item()
    mark('loss_read')
    return log_vars


def phase_timeline(run_phases, warmup, steps, device):
    """Median host and GPU ms of each phase ``run_phases(mark)`` marks, over ``steps`` steps."""
    for _ in range(warmup):
        run_phases(lambda phase: None)
    records = []
    for _ in range(steps):
        marks = []

        def mark(phase):
            event = torch.cuda.Event(enable_timing=True) if device.type == 'cuda' else None
            if event is not None:
                event.record()
            marks.append((phase, time.perf_counter(), event))
        mark('start')
        run_phases(mark)
        records.append(marks)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    rows = []
    for i, (phase, _, _) in enumerate(records[0][1:], 1):
        host = [(r[i][1] - r[i - 1][1]) * 1e3 for r in records]
        gpu = [r[i - 1][2].elapsed_time(r[i][2]) if r[i][2] is not None else float('nan')
               for r in records]
        rows.append(dict(phase=phase, host_ms=statistics.median(host),
                         gpu_ms=statistics.median(gpu)))
    return rows


def loader_iter(dataset, batch, workers, device, collate_fn=pseudo_collate, sharing=None):
    """An iterator over a new loader; ``sharing``: the workers' tensor sharing strategy."""
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy(sharing or before)
    try:  # the workers start here and keep the strategy they were forked with
        return iter(make_loader(dataset, batch, workers, device.type == 'cuda', collate_fn))
    finally:
        torch.multiprocessing.set_sharing_strategy(before)


def end_to_end_seconds(model, optim_wrapper, it, workers, device, cfg, preprocessor,
                       **step_args):
    """Median ``train_step`` on fresh batches from ``it`` (a loader of ``workers`` workers,
    shut down on return; ``step_args``: ``segmentor_step``'s); the warm-up covers the workers'
    start (one batch each)."""
    step = segmentor_step(model, optim_wrapper, lambda: next(it), preprocessor, **step_args)
    return median_step_seconds(step, max(cfg['warmup'], workers), cfg['steps'], device)


def stacked_batch(batch, pin):
    """A ``pseudo_collate`` batch re-collated by ``stack_seg_collate`` (pinned if ``pin``)."""
    batch = copy.deepcopy(batch)
    batch = stack_seg_collate([dict(inputs=img, data_samples=sample) for img, sample in
                               zip(batch['inputs'], batch['data_samples'])])
    if pin:
        batch['inputs'] = batch['inputs'].pin_memory()
        batch['gt_sem_seg']['data'] = batch['gt_sem_seg']['data'].pin_memory()
    return batch


def one_group_optim_cfg(optim_cfg):
    """``optim_cfg`` with mmengine's default constructor: one parameter group."""
    cfg = copy.deepcopy(optim_cfg)
    for key in ('constructor', 'paramwise_cfg'):
        cfg.pop(key, None)
    return cfg


def profile_steps(step, device, path, name, steps=3, rows=25):
    """torch.profiler over ``steps`` calls of ``step``: wall and GPU-busy ms per step, and the
    ops with the most self GPU time (on a GPU) and with the most self CPU time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step()  # warm
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / steps
    events = prof.key_averages()
    # as the profiler's own 'Self CUDA time total': kernels and copies, not annotations
    gpu_ms = sum(e.self_device_time_total for e in events if e.device_type != DeviceType.CPU
                 and not getattr(e, 'is_user_annotation', False)) / 1e3 / steps
    text = [f'{steps} {name} steps under the profiler: wall {wall_ms:.1f} ms per step, '
            f'GPU busy {gpu_ms:.1f} ms per step (the rest the GPU waits for the host)']
    for sort_by in (['self_cuda_time_total'] if cuda else []) + ['self_cpu_time_total']:
        text.append(f'sorted by {sort_by}\n' + events.table(sort_by=sort_by, row_limit=rows))
    text = '\n\n'.join(text)
    with open(path, 'w') as f:
        f.write(text + '\n')
    return text


def python_profile(named_steps, path, steps=5, rows=30):
    """cProfile over ``steps`` calls of each step: the functions by cumulative and own time."""
    import cProfile
    import io
    import pstats
    out = io.StringIO()
    for name, step in named_steps:
        step()  # warm
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(steps):
            step()
        profiler.disable()
        for sort_by in ('cumulative', 'tottime'):
            out.write(f'=== {steps} {name} steps, sorted by {sort_by}\n')
            pstats.Stats(profiler, stream=out).sort_stats(sort_by).print_stats(rows)
    with open(path, 'w') as f:
        f.write(out.getvalue())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--tiny', action='store_true', help='tiny model and crops (smoke test)')
    parser.add_argument('--workers', type=int, default=None,
                        help='DataLoader workers (default: CPU cores - 2, at most 14)')
    parser.add_argument('--end-to-end-workers', type=int, nargs='*', default=[], metavar='N',
                        help='also time end_to_end with each of these worker counts')
    parser.add_argument('--batch', type=int, default=None)
    parser.add_argument('--no-compile', action='store_true', help='eager backbone blocks')
    parser.add_argument('--compile-mode', default='default', choices=COMPILE_MODES,
                        help="torch.compile mode of the blocks ('reduce-overhead': CUDA graphs)")
    parser.add_argument('--rows', nargs='*', metavar='WHAT',
                        help='time only these rows (the backbone row always runs: the reference)')
    parser.add_argument('--profile', action='store_true',
                        help='also profile 3 segmentor steps: top ops by self time in '
                             'seg_iteration_profile.txt')
    parser.add_argument('--timeline', action='store_true',
                        help='also time each phase of the backbone and stacked segmentor steps, '
                             'host against GPU, in seg_iteration_timeline.md')
    parser.add_argument('--waits', action='store_true',
                        help='also find where the stacked fused steps make the GPU wait: '
                             'synchronising calls (sync debug mode) and the GPU idle gaps of a '
                             'profiler trace, in seg_iteration_waits.md (+ the traces)')
    parser.add_argument('--out', default=os.environ.get('OUT') or 'work_dirs/seg_iteration')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = dict(TINY if args.tiny else FULL)
    if args.batch:
        cfg['batch'] = args.batch
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    workers = args.workers if args.workers is not None else \
        (min(max((os.cpu_count() or 2) - 2, 1), 14) if not args.tiny else 0)
    init_default_scope('mmseg')
    import mmpatch.models  # noqa: F401  (registers PatchViT and LinearHead)
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model_cfg = segmentor_cfg(cfg['arch'], cfg['patch_size'], cfg['crop'],
                              compile_blocks=cuda and not args.no_compile and args.compile_mode)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
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
    on_device = plain.cast_data(copy.deepcopy(fixed))
    one_group = build_optim_wrapper(model, one_group_optim_cfg(optim_cfg))
    stacked = MODELS.build(dict(model_cfg['data_preprocessor'],
                                type='StackedSegDataPreProcessor')).to(device)
    fixed_stacked = stacked_batch(fixed, pin=cuda)
    steps = dict(
        backbone=backbone_step(model.backbone, batch, crop, device, optim_cfg.optimizer),
        segmentor=segmentor_step(model, optim_wrapper, lambda: fixed, plain),
        segmentor_mmseg_loss=segmentor_step(model, optim_wrapper, lambda: fixed, plain,
                                            fast_loss=False),
        segmentor_fused_loss=segmentor_step(model, optim_wrapper, lambda: fixed, plain,
                                            fast_loss='fused'),
        segmentor_batch_on_gpu=segmentor_step(model, optim_wrapper, lambda: on_device, plain),
        segmentor_one_group=segmentor_step(model, one_group, lambda: fixed, plain),
        segmentor_stacked=segmentor_step(model, optim_wrapper, lambda: fixed_stacked, stacked),
        segmentor_stacked_fused=segmentor_step(model, optim_wrapper, lambda: fixed_stacked,
                                               stacked, fast_loss='fused'),
        segmentor_stacked_fused_prefetch=segmentor_step(model, optim_wrapper,
                                                        lambda: fixed_stacked, stacked,
                                                        fast_loss='fused', prefetch=True),
        segmentor_stacked_fused_prefetch_host_log=segmentor_step(
            model, optim_wrapper, lambda: fixed_stacked, stacked, fast_loss='fused',
            prefetch=True, host_log=True))

    def add_row(what, time_it, **extra):
        """A row of ``time_it()`` seconds; False (and an error row) where it raised."""
        try:
            seconds = time_it()
        except Exception as err:  # noqa: BLE001  (recorded in the row and printed in full)
            if what == 'backbone':
                raise
            traceback.print_exc()  # one broken loss path must not cost the other rows of a run
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
        if not wanted(what):
            del steps[what]
            continue
        if not add_row(what, lambda: median_step_seconds(step, cfg['warmup'], cfg['steps'],
                                                         device)):
            del steps[what]  # not profiled
    stacking = dict(collate_fn=stack_seg_collate)
    fused = dict(fast_loss='fused')
    end_to_end_rows = [  # (what, workers, loader arguments, preprocessor, segmentor_step's)
        ('end_to_end', workers, {}, plain, {}),
        ('end_to_end_stacked', workers, stacking, stacked, {}),
        ('end_to_end_stacked_fused', workers, stacking, stacked, fused),
        ('end_to_end_stacked_fused_prefetch', workers, stacking, stacked,
         dict(fused, prefetch=True)),
        ('end_to_end_stacked_fused_prefetch_host_log', workers, stacking, stacked,
         dict(fused, prefetch=True, host_log=True)),
        ('end_to_end_file_system', workers, dict(sharing='file_system'), plain, {})] + [
        (f'end_to_end_w{n}', n, {}, plain, {}) for n in args.end_to_end_workers]
    for what, n, loader_args, preprocessor, step_args in end_to_end_rows:
        if not wanted(what):
            continue
        it = loader_iter(dataset, batch, n, device, **loader_args)
        add_row(what, lambda: end_to_end_seconds(model, optim_wrapper, it, n, device, cfg,
                                                 preprocessor, **step_args), workers=n)
        del it
    reference = rows[1]['ms_per_iter']
    for row in rows[1:]:
        row['time_vs_backbone'] = row['ms_per_iter'] / reference if 'ms_per_iter' in row else None
    rows[0]['time_vs_backbone'] = None
    meta = dict(device=torch.cuda.get_device_name(device) if cuda else 'cpu', batch=batch,
                crop=crop, patch_size=cfg['patch_size'], workers=workers,
                compile_blocks=cuda and not args.no_compile and args.compile_mode,
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
        live = dict(end_to_end=(loader_iter(dataset, batch, workers, device), plain),
                    end_to_end_stacked=(loader_iter(dataset, batch, workers, device,
                                                    collate_fn=stack_seg_collate), stacked))
        for what, (it, preprocessor) in live.items():
            for _ in range(workers):  # the workers' start is not profiled
                next(it)
            steps[what] = segmentor_step(model, optim_wrapper, lambda it=it: next(it), preprocessor)
        for what, suffix in (('backbone', '_backbone'), ('segmentor', ''),
                             ('segmentor_mmseg_loss', '_mmseg_loss'),
                             ('segmentor_fused_loss', '_fused_loss'),
                             ('segmentor_stacked_fused', '_stacked_fused'),
                             ('end_to_end', '_end_to_end'),
                             ('end_to_end_stacked', '_end_to_end_stacked')):
            if what not in steps:
                continue
            print(profile_steps(steps[what], device, name=what, path=os.path.join(
                args.out, f'seg_iteration_profile{suffix}.txt')))
        python_profile([(what, steps[what]) for what in ('segmentor', 'end_to_end',
                                                         'end_to_end_stacked') if what in steps],
                       os.path.join(args.out, 'seg_iteration_profile_python.txt'))
        del live
    if args.timeline:
        timed = dict(backbone=steps['backbone'], segmentor_stacked=segmentor_phases(
            model, optim_wrapper, fixed_stacked, stacked, True))
        if 'segmentor_stacked_fused' in steps:  # not where its row failed or was left out
            timed['segmentor_stacked_fused'] = segmentor_phases(model, optim_wrapper,
                                                                fixed_stacked, stacked, 'fused')
        write_timeline(os.path.join(args.out, 'seg_iteration_timeline.md'), timed, cfg, device)
    if args.waits and cuda:
        lines = []
        for what in ('segmentor_stacked_fused', 'segmentor_stacked_fused_prefetch'):
            if what in steps:
                lines += waits(what, steps[what], args.out)
        it = loader_iter(dataset, batch, workers, device, **stacking)  # after: its threads
        for _ in range(workers):  # the workers' start is not traced
            next(it)
        lines += waits('end_to_end_stacked_fused_prefetch', segmentor_step(
            model, optim_wrapper, lambda: next(it), stacked, 'fused', prefetch=True), args.out)
        del it
        with open(os.path.join(args.out, 'seg_iteration_waits.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        print('\n'.join(lines)[-6000:])
    return rows


def waits(what, step, out):
    """Markdown lines for ``seg_iteration_waits.md``: the step's synchronising calls
    (``sync_points``) and the longest GPU idle gaps of a 3-step trace (``trace_gaps``; the
    trace beside it)."""
    lines = [f'## {what}', '', '### synchronising calls (one step)', '']
    for message, stack in sync_points(step):
        lines += [f'- {message}', '', '```', stack.rstrip()[-2500:], '```', '']
    gaps, idle = trace_gaps(step, os.path.join(out, f'trace_{what}.json'))
    return lines + ['', f'### GPU idle gaps >= 50 us over 3 steps: {idle / 1e3:.2f} ms in all', '',
                    markdown_table([dict(g, host=' > '.join(g['host'])) for g in gaps[:15]],
                                   ['start_us', 'gap_us', 'next_gpu_op', 'host']), '']


def segmentor_phases(model, optim_wrapper, batch, preprocessor, fast_loss):
    """``run_phases(mark)`` for ``phase_timeline``: one ``train_step`` on ``batch``."""
    def run_phases(mark):
        use(model, preprocessor, fast_loss)
        train_step_phases(model, optim_wrapper, batch, mark)
    return run_phases


def write_timeline(path, named_phases, cfg, device):
    """``phase_timeline`` of each step, with a total line each, as one Markdown table."""
    rows = []
    for what, run_phases in named_phases.items():
        phases = phase_timeline(run_phases, cfg['warmup'], cfg['steps'], device)
        rows += [dict(what=what, **row) for row in phases]
        rows.append(dict(what=what, phase='total', host_ms=sum(r['host_ms'] for r in phases),
                         gpu_ms=sum(r['gpu_ms'] for r in phases)))
    text = markdown_table(rows, ['what', 'phase', 'host_ms', 'gpu_ms'])
    with open(path, 'w') as f:
        f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
