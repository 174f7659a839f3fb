"""Train a segmentor (default_scope 'mmseg') or a detector ('mmdet') from an mmengine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--max-iters N | --iters-scale F] [--cfg-options k=v ...]
                          [--launcher {none,pytorch,slurm,mpi}]

The options and the checks: mmpatch/apis/train.py (``train`` is the same as a function).
"""
from mmpatch.apis.errors import run
from mmpatch.apis.train import main

if __name__ == '__main__':
    run(main, 'train.py')
