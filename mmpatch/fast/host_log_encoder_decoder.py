"""mmseg's EncoderDecoder whose log values reach the host without draining the GPU's queue.

mmengine's hooks read each iteration's log values (``RuntimeInfoHook``, ``FiniteLossHook``)
with ``.item()`` on GPU tensors: the host waits until the GPU has run everything queued, the
backward and the optimizer step included, and every hook, the next batch and the next forward's
launches then run with the GPU idle. Here the log values are copied to the host right after the
forward (stream order), the backward and the optimizer step are issued, and only then does the
host wait for the copies, which by then are usually done: the host runs ahead of the GPU by up
to one step. Measured gain: docs/segmentation.md ("Fast data path").
"""
from typing import Callable, Dict, Tuple

import torch
from mmengine.model import BaseModel
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


def copy_log_vars(log_vars: dict) -> Tuple[Dict[str, torch.Tensor], Callable[[], None]]:
    """(host copies of ``log_vars``, ``wait``): the copies are issued in stream order (each runs
    once its value exists, not after later work); read them only after ``wait()``."""
    on_host = {k: v.detach().to('cpu', non_blocking=True) for k, v in log_vars.items()}
    if not any(v.is_cuda for v in log_vars.values()):
        return on_host, lambda: None
    copied = torch.cuda.Event()
    copied.record()
    return on_host, copied.synchronize


def host_log_vars(log_vars: dict) -> dict:
    """``log_vars`` as host tensors, returned once copied (waits for the work that made them)."""
    on_host, wait = copy_log_vars(log_vars)
    wait()
    return on_host


def train_step_host_log(model: BaseModel, data, optim_wrapper) -> dict:
    """``BaseModel.train_step`` of ``model`` (same update, same log values) returning the log
    values on the host: copied after the forward, waited for after the backward and the
    optimizer step are issued."""
    with optim_wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        losses = model._run_forward(data, mode='loss')
    loss, log_vars = BaseModel.parse_losses(model, losses)
    on_host, wait = copy_log_vars(log_vars)
    optim_wrapper.update_params(loss)
    wait()
    return on_host


@MODELS.register_module()
class HostLogEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` (same arguments, same training step) whose log values come back on
    the host: ``train_step`` (mmengine's loops without a model wrapper) waits for them after
    issuing the update (``train_step_host_log``); ``parse_losses`` (called by
    ``MMDistributedDataParallel.train_step`` and the other wrappers) waits before it returns,
    so for the forward only."""

    def train_step(self, data, optim_wrapper):
        return train_step_host_log(self, data, optim_wrapper)

    def parse_losses(self, losses):
        loss, log_vars = super().parse_losses(losses)
        return loss, host_log_vars(log_vars)
