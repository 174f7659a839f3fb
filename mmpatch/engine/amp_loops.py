"""Validation / test loops under autocast in a chosen dtype (bf16), like the training step.

mmengine's ``ValLoop``/``TestLoop`` only know ``fp16=True`` (float16 autocast) or full fp32.
At small patches fp32 inference is the wrong default: fused attention has no fp32 flash /
cuDNN kernel, so a 262,144-token window runs a much slower kernel than the bf16 cuDNN one the
model trained with (ViT-B p1: about ten times slower per window in fp32; the figures in
docs/segmentation.md, "Recipe"). ``AmpValLoop`` / ``AmpTestLoop`` run ``val_step`` /
``test_step`` under ``torch.autocast(dtype)``:

    val_cfg = dict(type='AmpValLoop', dtype='bfloat16')
    test_cfg = dict(type='AmpTestLoop', dtype='bfloat16')
"""
import torch
from mmengine.registry import LOOPS
from mmengine.runner import TestLoop, ValLoop


def autocast_dtype(name):
    """torch dtype for a config's ``dtype`` string; only the two autocast dtypes."""
    if name not in ('bfloat16', 'float16'):
        raise ValueError(f"autocast dtype must be 'bfloat16' or 'float16', got {name!r}")
    return getattr(torch, name)


def _device_type():
    return 'cuda' if torch.cuda.is_available() else 'cpu'


class _AmpLoopMixin:
    """Runs the parent's ``run_iter`` inside ``torch.autocast(device, dtype)``.

    The parent opens mmengine's ``autocast(enabled=True)`` inside (``fp16=True``); with no dtype
    given that one takes the dtype already set by the outer context, so the model sees ours.
    """

    def run_iter(self, idx, data_batch):
        with torch.autocast(_device_type(), dtype=self.autocast_dtype):
            super().run_iter(idx, data_batch)


@LOOPS.register_module()
class AmpValLoop(_AmpLoopMixin, ValLoop):

    def __init__(self, runner, dataloader, evaluator, dtype='bfloat16'):
        self.autocast_dtype = autocast_dtype(dtype)
        super().__init__(runner, dataloader, evaluator, fp16=True)


@LOOPS.register_module()
class AmpTestLoop(_AmpLoopMixin, TestLoop):

    def __init__(self, runner, dataloader, evaluator, dtype='bfloat16'):
        self.autocast_dtype = autocast_dtype(dtype)
        super().__init__(runner, dataloader, evaluator, fp16=True)
