"""Turn timm / DeiT ViT weights into PatchViT weights.

Used by ``PatchViT.load_pretrained`` and by ``tools/model_converters/vit_timm_to_mmpatch.py``,
so both go through exactly the same conversion.
"""
import torch

from .checkpoint_filter import adapt_patch_and_pos_embed

# Classifier heads: meaningless for a dense backbone.
_HEAD_PREFIXES = ('head.', 'head_dist.')


def timm_vit_to_patch_vit(state_dict, model):
    """Return ``state_dict`` (timm / DeiT / mmpatch ViT names) ready to load strictly into ``model``.

    Conversions, each only where it is meaningful for a dense backbone:
    - classifier heads (``head.*``, DeiT ``head_dist.*``) are dropped;
    - a global-pool checkpoint's ``fc_norm`` (its final LayerNorm, ``norm`` being
      Identity there) becomes ``norm``; ``norm`` is dropped when ``model`` has
      ``final_norm=False``;
    - DeiT's ``dist_token`` and its position slot are dropped;
    - a ``cls_token`` and its position slot are dropped when ``model`` has none;
    - the patch-embed kernel (FlexiViT) and position grid are resampled to ``model``.
    Anything else that does not fit is left for ``load_state_dict_strict`` to report.
    """
    own = model.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_HEAD_PREFIXES)}
    if 'fc_norm.weight' in state_dict and 'norm.weight' not in state_dict:
        for name in ('weight', 'bias'):
            if f'fc_norm.{name}' in state_dict:
                state_dict[f'norm.{name}'] = state_dict.pop(f'fc_norm.{name}')
    if 'norm.weight' not in own:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith('norm.')}

    pos = state_dict.get('pos_embed')
    if 'dist_token' in state_dict:
        del state_dict['dist_token']
        if pos is not None:  # timm / DeiT layout: [cls, dist, grid...]
            pos = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
    if 'cls_token' in state_dict and 'cls_token' not in own:
        del state_dict['cls_token']
        if pos is not None:
            pos = pos[:, 1:]
    if pos is not None:
        state_dict['pos_embed'] = pos
    return adapt_patch_and_pos_embed(state_dict, model, num_prefix=model.num_prefix_tokens,
                                     new_hw=model.pos_grid)
