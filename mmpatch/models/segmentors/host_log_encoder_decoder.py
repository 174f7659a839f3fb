"""mmseg's EncoderDecoder whose log values reach the host without draining the GPU's queue.

mmengine's hooks read each iteration's log values (``RuntimeInfoHook``, ``FiniteLossHook``)
with ``.item()`` on GPU tensors: the host waits until the GPU has run everything queued, the
backward and the optimizer step included, and every hook, the next batch and the next forward's
launches then run with the GPU idle. Here the log values are copied to the host right after the
forward and waited for there, before the backward is launched: the host waits for the forward
only, and the backward (~20 of ~35 ms of GPU work at ViT-B p16) covers the rest. ViT-B p16 + LinearHead, batch
16, one H200, with PrefetchBatchHook: 36.4 -> 35.8 ms per iteration in the benchmark
(results/benchmark/NOTES.md, session 7).
"""
import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS


def host_log_vars(log_vars: dict) -> dict:
    """``log_vars`` as host tensors: each copied once the values exist (stream order), without
    waiting for later work on the stream. Returns when the copies are done."""
    on_host = {k: v.detach().to('cpu', non_blocking=True) for k, v in log_vars.items()}
    if any(v.is_cuda for v in log_vars.values()):
        copied = torch.cuda.Event()
        copied.record()
        copied.synchronize()
    return on_host


@MODELS.register_module()
class HostLogEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` (same arguments, same training step) whose ``parse_losses`` returns the
    log values on the host, copied after the forward (``host_log_vars``). mmengine calls
    ``parse_losses`` from ``BaseModel.train_step`` and from ``MMDistributedDataParallel``'s."""

    def parse_losses(self, losses):
        loss, log_vars = super().parse_losses(losses)
        return loss, host_log_vars(log_vars)
