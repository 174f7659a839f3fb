"""Turn official Adventurer weights into PatchMamba weights.

Used by ``PatchMamba.load_pretrained`` and by
``tools/model_converters/adventurer_to_mmpatch.py``, so both convert the same way.
"""

from .checkpoint_filter import adapt_patch_and_pos_embed

_HEAD_PREFIXES = ('head.',)  # the ImageNet classifier: meaningless for a dense backbone


def adventurer_to_patch_mamba(state_dict, model):
    """Return ``state_dict`` (official Adventurer or mmpatch names) ready to load into ``model``.

    The official names are PatchMamba's, so the conversion only
    - drops the classifier ``head.*``;
    - drops ``norm_f.*`` when ``model`` was built with ``final_norm=False``;
    - resamples the patch-embed kernel (FlexiViT) and the grid part of the
      position table (class slot last) to ``model``'s patch size and grid.
    Anything else that does not fit is left for ``load_state_dict_strict`` to report.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_HEAD_PREFIXES)}
    if getattr(model, 'norm_f', None) is None:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith('norm_f.')}
    return adapt_patch_and_pos_embed(state_dict, model, num_prefix=0, num_suffix=1,
                                     new_hw=model.pos_grid)
