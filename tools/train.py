"""Train a segmentor (default_scope 'mmseg') or a detector ('mmdet') from an mmengine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
from mmpatch.engine.cli import run, train_main

if __name__ == '__main__':
    run(train_main, 'train.py')
