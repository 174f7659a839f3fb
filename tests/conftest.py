"""Shared pytest fixtures."""
import os

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through Triton's interpreter (read when a
# kernel is imported); with one they compile as usual.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')


@pytest.fixture(scope='session')
def toy_seg_root(tmp_path_factory):
    """A small toy segmentation set (16 train + 4 val images, 64 px, 8 classes), made once."""
    from mmpatch.datasets.toy_scenes import write_toy_seg
    root = tmp_path_factory.mktemp('toy') / 'toy_seg'
    write_toy_seg(str(root), num_train=16, num_val=4, img_size=64, num_classes=8, seed=0)
    return root


@pytest.fixture(scope='session')
def toy_coco_root(tmp_path_factory):
    """A small toy COCO set (12 train + 4 val images, 64 px, 6 categories), made once."""
    from mmpatch.datasets.toy_scenes import write_toy_coco
    root = tmp_path_factory.mktemp('toy') / 'toy_coco'
    write_toy_coco(str(root), num_train=12, num_val=4, img_size=64, num_classes=6, seed=0)
    return root
