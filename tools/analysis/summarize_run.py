"""One training run's numbers from mmengine's own files: s/iter, img/s, peak memory, test mIoU.

    python tools/analysis/summarize_run.py WORK_DIR --gpus 2 --batch-per-gpu 2 [--skip-first 1]

Reads ``WORK_DIR/<stamp>/vis_data/scalars.json`` (per-iteration ``time`` and ``memory``: log
with ``default_hooks.logger.interval=1`` to get every iteration) and, when present,
``WORK_DIR/test/<stamp>/<stamp>.json`` (``tools/test.py --work-dir WORK_DIR/test``).
Prints one JSON line; ``--baseline`` (another run's JSON) adds the per-GPU throughput ratio.
"""
import argparse
import json
import os.path as osp

from mmpatch.sweep.report import read_test_metrics, read_train_scalars


def summarize(work_dir, gpus, batch_per_gpu, skip_first=1):
    sec_per_iter, peak_mb = read_train_scalars(work_dir, skip_first=skip_first)
    if sec_per_iter is None:
        raise FileNotFoundError(f'no training iterations logged under {work_dir}/*/vis_data')
    images_per_s = gpus * batch_per_gpu / sec_per_iter
    row = dict(work_dir=work_dir, gpus=gpus, batch_per_gpu=batch_per_gpu,
               s_per_iter=round(sec_per_iter, 4), images_per_s=round(images_per_s, 4),
               images_per_s_per_gpu=round(images_per_s / gpus, 4),
               peak_mem_gib_rank0=None if peak_mb is None else round(peak_mb / 1024, 2))
    if osp.isdir(osp.join(work_dir, 'test')):
        row['test'] = read_test_metrics(work_dir)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir')
    parser.add_argument('--gpus', type=int, required=True)
    parser.add_argument('--batch-per-gpu', type=int, required=True)
    parser.add_argument('--skip-first', type=int, default=1,
                        help='iterations left out of the median (warm-up)')
    parser.add_argument('--baseline', help='JSON file of the same config on fewer GPUs')
    args = parser.parse_args()
    row = summarize(args.work_dir, args.gpus, args.batch_per_gpu, args.skip_first)
    if args.baseline:
        with open(args.baseline) as f:
            base = json.load(f)
        row['scaling_efficiency'] = round(row['images_per_s_per_gpu']
                                          / base['images_per_s_per_gpu'], 4)
    print(json.dumps(row))


if __name__ == '__main__':
    main()
