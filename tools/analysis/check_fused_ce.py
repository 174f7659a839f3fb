"""The fused resize + cross-entropy kernel against the two other loss paths, on the GPU.

For ADE20K-sized logits (batch 16, 150 classes, 32 x 32, i.e. p16 on 512 x 512 crops, bf16):
- agreement of ``upsample_cross_entropy`` with ``F.interpolate`` + mmseg's ``CrossEntropyLoss``
  in float32 (loss, gradient, accuracy);
- forward + backward time (median of CUDA events) of the three paths on the same bf16 logits:
  ``mmseg`` (``F.interpolate`` + ``CrossEntropyLoss`` + mmseg's top-k ``accuracy``),
  ``matmul`` (``LinearHead(fast_loss=True)``: ``resize_bilinear_matmul`` + the same loss +
  ``pixel_accuracy``) and ``fused`` (``fast_loss='fused'``).
Writes ``fused_ce.{csv,md}``.

GPU machine (device kit, repo root):
    source .device-kit/setup.sh && export PYTHONPATH=$PYTHONPATH:. && \
        python3 tools/analysis/check_fused_ce.py --out $OUT
CPU (Triton's interpreter, tiny sizes):
    TRITON_INTERPRET=1 python tools/analysis/check_fused_ce.py --device cpu --tiny --out /tmp/fce
"""
import argparse
import os

import torch
import torch.nn.functional as F
from mmseg.models.losses import CrossEntropyLoss, accuracy

from mmpatch.models.utils.bilinear_matmul import resize_bilinear_matmul
from mmpatch.models.utils.pixel_accuracy import pixel_accuracy
from mmpatch.models.utils.upsample_cross_entropy import upsample_cross_entropy
from mmpatch.utils.benchmark import markdown_table, median_step_seconds, write_csv

FULL = dict(batch=16, classes=150, logits_hw=(32, 32), label_hw=(512, 512), warmup=5, steps=30)
TINY = dict(batch=2, classes=7, logits_hw=(4, 4), label_hw=(32, 32), warmup=1, steps=2)


def loss_paths():
    """name -> fn(logits, label) returning (loss, accuracy), as the heads compute them."""
    ce = CrossEntropyLoss()

    def mmseg(logits, label):
        resized = F.interpolate(logits, label.shape[-2:], mode='bilinear', align_corners=False)
        return ce(resized, label, ignore_index=255), accuracy(resized, label, ignore_index=255)

    def matmul(logits, label):
        resized = resize_bilinear_matmul(logits, label.shape[-2:], False)
        return ce(resized, label, ignore_index=255), pixel_accuracy(resized, label, 255)

    def fused(logits, label):
        return upsample_cross_entropy(logits, label, False, 255)
    return dict(mmseg=mmseg, matmul=matmul, fused=fused)


def make_inputs(cfg, device, dtype):
    gen = torch.Generator(device='cpu').manual_seed(0)
    logits = torch.randn(cfg['batch'], cfg['classes'], *cfg['logits_hw'], generator=gen)
    label = torch.randint(0, cfg['classes'], (cfg['batch'], *cfg['label_hw']), generator=gen)
    label[:, :8] = 255  # some unlabelled rows, as ADE20K's "other"
    return logits.to(device, dtype).requires_grad_(), label.to(device)


def agreement(device, cfg):
    """Max differences of the fused path from mmseg's, both in float32."""
    paths = loss_paths()
    logits, label = make_inputs(cfg, device, torch.float32)
    out = {}
    for name in ('mmseg', 'fused'):
        loss, acc = paths[name](logits, label)
        (grad,) = torch.autograd.grad(loss, logits)
        out[name] = (loss.detach(), acc.reshape(()), grad)
    (ref_loss, ref_acc, ref_grad), (loss, acc, grad) = out['mmseg'], out['fused']
    return dict(loss_rel_err=float((loss - ref_loss).abs() / ref_loss.abs()),
                grad_max_abs_err=float((grad - ref_grad).abs().max()),
                grad_max_abs=float(ref_grad.abs().max()),
                acc_abs_err=float((acc - ref_acc).abs()))


def timings(device, cfg):
    """Median forward + backward ms of each path on the same bf16 logits."""
    logits, label = make_inputs(cfg, device, torch.bfloat16)
    rows = []
    for name, fn in loss_paths().items():
        def step():
            loss, acc = fn(logits, label)
            loss.backward()
        seconds = median_step_seconds(step, cfg['warmup'], cfg['steps'], device)
        rows.append(dict(path=name, ms=seconds * 1e3))
    for row in rows:
        row['vs_mmseg'] = row['ms'] / rows[0]['ms']
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--tiny', action='store_true', help='tiny sizes (CPU smoke test)')
    ap.add_argument('--out', required=True)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cfg = TINY if args.tiny else FULL
    check = agreement(device, cfg)
    print(check, flush=True)
    rows = timings(device, cfg)
    shape = f"{cfg['batch']}x{cfg['classes']}x{cfg['logits_hw']}->{cfg['label_hw']}"
    for row in rows:
        row.update(check, shape=shape, device=torch.cuda.get_device_name(device)
                   if device.type == 'cuda' else 'cpu')
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, 'fused_ce.csv'), rows)
    text = markdown_table(rows, ['path', 'ms', 'vs_mmseg', 'loss_rel_err', 'grad_max_abs_err',
                                 'acc_abs_err', 'shape', 'device'])
    with open(os.path.join(args.out, 'fused_ce.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    return rows, check


if __name__ == '__main__':
    main()
