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
