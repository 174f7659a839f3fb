"""FLOP counting that sees fused attention and the SSD scan.

mmengine's counter walks modules and misses ``F.scaled_dot_product_attention``
and the SSD scan. ``torch.utils.flop_counter`` counts at the aten level, so the
matmuls of mmpatch's PyTorch SSD path are seen; the one SDPA kernel it does not
know (the CPU flash kernel) is registered here. FLOPs = 2 x multiply-adds.
"""
import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten
_CPU_FLASH = getattr(_aten, '_scaled_dot_product_flash_attention_for_cpu', None)

if _CPU_FLASH is not None and _CPU_FLASH not in flop_counter.flop_registry:
    @flop_counter.register_flop_formula(_CPU_FLASH)
    def _cpu_flash_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


@torch.no_grad()
def count_forward_flops(model, inputs, **forward_kwargs):
    """Total forward FLOPs of ``model(inputs, **forward_kwargs)``, attention and SSD matmuls included."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(inputs, **forward_kwargs)
    finally:
        model.train(was_training)
    return counter.get_total_flops()



class DetectorFeatures(torch.nn.Module):
    """A detector's ``extract_feat`` (backbone + neck) as a module's forward: what detection
    FLOPs count, since the cost of the RPN and RoI heads depends on the number of proposals."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, inputs):
        return self.detector.extract_feat(inputs)

def _is_attention_op(name):
    return 'scaled_dot_product' in name


def _has_ssd_paths(module):
    """Whether ``module`` is a Mamba-2 mixer (``Mamba2Mixer``): a module with an ``impl``
    switch, a kernel ``chunk_size`` and a ``torch_chunk_size``. Recognised by these attributes,
    not by its class, so that ``mmpatch.utils`` does not import ``mmpatch.models`` (which
    imports ``mmpatch.utils``)."""
    return all(hasattr(module, name) for name in ('impl', 'chunk_size', 'torch_chunk_size'))


@torch.no_grad()
def count_flops_by_op(model, input_shape, **forward_kwargs):
    """Forward FLOPs of ``model`` on one input of ``input_shape``, per aten op (name -> FLOPs).

    Runs on fake CPU tensors (no memory, no arithmetic: a 262k-token forward
    costs seconds), so SDPA dispatches as on the CPU and is counted through
    the flash-kernel formula above. Mamba-2 mixers run their PyTorch SSD path
    with the chunk length of the mamba_ssm kernel (``chunk_size``), so the
    count is that of the chunked algorithm the GPU runs; both are restored.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    mixers = [m for m in model.modules() if _has_ssd_paths(m)]
    saved = [(m.impl, m.torch_chunk_size) for m in mixers]
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        for m in mixers:
            m.impl, m.torch_chunk_size = 'torch', m.chunk_size
        model.eval()
        with FakeTensorMode(allow_non_fake_inputs=True):
            inputs = torch.empty(*input_shape)
            with counter:
                model(inputs, **forward_kwargs)
    finally:
        model.train(was_training)
        for m, (impl, chunk) in zip(mixers, saved):
            m.impl, m.torch_chunk_size = impl, chunk
    return {str(op): int(n) for op, n in counter.get_flop_counts().get('Global', {}).items()}


def split_attention_flops(counts):
    """``(attention FLOPs, all other FLOPs)`` of a ``count_flops_by_op`` result."""
    attention = sum(n for op, n in counts.items() if _is_attention_op(op))
    return attention, sum(counts.values()) - attention
