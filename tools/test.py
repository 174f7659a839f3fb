"""Test (and evaluate) a segmentor (default_scope 'mmseg') or a detector ('mmdet').

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--show] [--show-dir DIR]
                         [--wait-time S] [--tta] [--cfg-options k=v ...] [--launcher ...]
"""
from mmpatch.engine.cli import run, test_main

if __name__ == '__main__':
    run(test_main, 'test.py')
