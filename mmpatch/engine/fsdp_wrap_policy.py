"""FSDP auto-wrap policy for mmpatch backbones: one FSDP unit per transformer / Mamba block.

Used by ``configs/_base_/fsdp.py`` through mmengine's FUNCTIONS registry
(``auto_wrap_policy=dict(type='patch_block_wrap_policy')``). Wrapping exactly
the blocks keeps parameter names of everything else unchanged and, inside a
block, only inserts FSDP's ``_fsdp_wrapped_module.`` after the block index, so
``get_layer_depth`` (layer decay) still reads ``blocks.<i>`` / ``layers.<i>``.
"""
from mmengine.registry import FUNCTIONS

BLOCK_CLASSES = ('ViTBlock', 'AdventurerBlock')


@FUNCTIONS.register_module()
def patch_block_wrap_policy(module, recurse, nonwrapped_numel=0, block_classes=BLOCK_CLASSES):
    """torch FSDP policy: recurse everywhere; wrap modules whose class name is in ``block_classes``."""
    if recurse:
        return True
    return type(module).__name__ in tuple(block_classes)
