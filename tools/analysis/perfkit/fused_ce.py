"""The fused resize + cross-entropy kernel against the two other loss paths, on the GPU.

``LinearHead.loss_by_feat`` on ADE20K-sized logits (batch 16, 150 classes, 32 x 32, i.e. p16 on
512 x 512 crops), with each ``fast_loss``: ``False`` (mmseg's path: ``F.interpolate``,
``CrossEntropyLoss``, top-k ``accuracy``), ``True`` (``resize_bilinear_matmul``, the same loss,
``pixel_accuracy``) and ``'fused'`` (``upsample_cross_entropy``, whose kernel products run in
fp32, ``fused_ieee``, or on tensor cores, ``fused_tf32``; the head picks tf32 for bf16 logits):
- agreement of each fused row with mmseg's path on the same float32 logits (loss, gradient,
  accuracy);
- forward + backward time (median of CUDA events) of every row on the same bf16 logits.
Writes ``fused_ce.{csv,md}``.

On a CPU, through Triton's interpreter, tiny sizes:
    TRITON_INTERPRET=1 python tools/analysis/check.py fused-ce --device cpu --tiny --out /tmp/fce
"""
import argparse
import os

import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmpatch.models.heads.linear_head import LinearHead
import mmpatch.models.losses.upsample_cross_entropy as fce
from mmpatch.models.losses.upsample_cross_entropy import fused_ce_supported, upsample_cross_entropy
from .utils import device_name, markdown_table, median_step_seconds, write_csv

FULL = dict(batch=16, classes=150, logits_hw=(32, 32), label_hw=(512, 512), warmup=5, steps=30)
TINY = dict(batch=2, classes=7, logits_hw=(4, 4), label_hw=(32, 32), warmup=1, steps=2)
PATHS = dict(mmseg=False, matmul=True, fused_ieee='ieee', fused_tf32='tf32')  # row -> fast_loss


def make_inputs(cfg, device, dtype):
    """Random logits and the data samples holding their labels (some rows unlabelled)."""
    gen = torch.Generator(device='cpu').manual_seed(0)
    logits = torch.randn(cfg['batch'], cfg['classes'], *cfg['logits_hw'], generator=gen)
    label = torch.randint(0, cfg['classes'], (cfg['batch'], 1, *cfg['label_hw']), generator=gen)
    label[..., :8, :] = 255  # as ADE20K's "other"
    samples = [SegDataSample(gt_sem_seg=PixelData(data=one.to(device))) for one in label]
    return logits.to(device, dtype).requires_grad_(), samples


def head_loss(cfg, path):
    """fn(logits, samples) -> (loss, accuracy) of a LinearHead with this ``fast_loss``; for
    'ieee' / 'tf32' the head's fused loss call with that kernel precision."""
    fused = path in ('ieee', 'tf32')
    head = LinearHead(in_channels=8, num_classes=cfg['classes'],
                      fast_loss='fused' if fused else path)

    def loss(logits, samples):
        if fused:  # as LinearHead._fused_loss, with the precision named
            label = head._stack_batch_gt(samples).squeeze(1)
            return upsample_cross_entropy(logits, label, head.align_corners, head.ignore_index,
                                          precision=path)
        out = head.loss_by_feat(logits, samples)
        return out['loss_ce'], out['acc_seg']
    return loss


def agreement(device, cfg):
    """Max differences of each fused row from mmseg's path, all on the same float32 logits."""
    logits, samples = make_inputs(cfg, device, torch.float32)
    if not fused_ce_supported(logits, cfg['label_hw'][1]):
        raise RuntimeError(f'the fused path does not apply on {device} (CPU: TRITON_INTERPRET=1)')
    out = {}
    for name in ('mmseg', 'fused_ieee', 'fused_tf32'):
        loss, acc = head_loss(cfg, PATHS[name])(logits, samples)
        (grad,) = torch.autograd.grad(loss, logits)
        out[name] = (loss.detach(), acc.reshape(()), grad)
    ref_loss, ref_acc, ref_grad = out.pop('mmseg')
    return {name: dict(loss_rel_err=float((loss - ref_loss).abs() / ref_loss.abs()),
                       grad_max_abs_err=float((grad - ref_grad).abs().max()),
                       grad_max_abs=float(ref_grad.abs().max()),
                       acc_abs_err=float((acc - ref_acc).abs()))
            for name, (loss, acc, grad) in out.items()}


# --tune: other launch settings of the kernel (BLOCK_X, BLOCK_C, NUM_WARPS), timed as fused_tf32
TUNE = ((64, 32, 4), (128, 64, 4), (128, 32, 8), (256, 32, 4))


def timings(device, cfg, tune=False):
    """Median forward + backward ms of each path on the same bf16 logits."""
    logits, samples = make_inputs(cfg, device, torch.bfloat16)
    rows = []

    def add(name, fast_loss, **extra):
        fn = head_loss(cfg, fast_loss)

        def step():
            loss, acc = fn(logits, samples)
            loss.backward()
        seconds = median_step_seconds(step, cfg['warmup'], cfg['steps'], device)
        rows.append(dict(path=name, ms=seconds * 1e3, **extra))
    for name, fast_loss in PATHS.items():
        add(name, fast_loss, **(launch_settings() if fast_loss == 'tf32' else {}))
    default = launch_settings()
    for setting in TUNE if tune else ():
        set_launch(*setting)
        try:
            add('fused_tf32', 'tf32', tuned=True, **launch_settings())
        finally:
            set_launch(*default.values())
    for row in rows:
        row['vs_mmseg'] = row['ms'] / rows[0]['ms']
    return rows


def launch_settings():
    return dict(block_x=fce.BLOCK_X, block_c=fce.BLOCK_C, warps=fce.NUM_WARPS)


def set_launch(block_x, block_c, warps):
    fce.BLOCK_X, fce.BLOCK_C, fce.NUM_WARPS = block_x, block_c, warps


def main(argv=None):
    ap = argparse.ArgumentParser(prog='check.py fused-ce', description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--tiny', action='store_true', help='tiny sizes (CPU smoke test)')
    ap.add_argument('--tune', action='store_true',
                    help='also time the kernel at other launch settings (TUNE)')
    ap.add_argument('--out', required=True)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    init_default_scope('mmseg')  # the head builds its loss there
    cfg = TINY if args.tiny else FULL
    check = agreement(device, cfg)
    print(check, flush=True)
    rows = timings(device, cfg, args.tune)
    shape = f"{cfg['batch']}x{cfg['classes']}x{cfg['logits_hw']}->{cfg['label_hw']}"
    for row in rows:
        row.update(shape=shape, device=device_name(device))
        if not row.get('tuned'):  # fused rows at the module's settings: their agreement
            row.update(check.get(row['path'], {}))
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, 'fused_ce.csv'), rows)
    text = markdown_table(rows, ['path', 'ms', 'vs_mmseg', 'block_x', 'block_c', 'warps',
                                 'loss_rel_err', 'grad_max_abs_err', 'acc_abs_err', 'shape',
                                 'device'])
    with open(os.path.join(args.out, 'fused_ce.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    return rows, check

