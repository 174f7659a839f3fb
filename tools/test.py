"""Test (and evaluate) a segmentor (default_scope 'mmseg') or a detector ('mmdet').

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--show] [--show-dir DIR]
                         [--wait-time S] [--tta] [--cfg-options k=v ...] [--launcher ...]

The options and the checks: mmpatch/apis/test.py (``test`` is the same as a function).
"""
from mmpatch.apis.errors import run
from mmpatch.apis.test import main

if __name__ == '__main__':
    run(main, 'test.py')
