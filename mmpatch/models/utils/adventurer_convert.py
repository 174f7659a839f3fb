"""Read a checkpoint file and turn official Adventurer weights into PatchMamba weights.

Used by ``PatchMamba.load_pretrained`` and by
``tools/model_converters/adventurer_to_mmpatch.py``, so both convert the same way.
"""
import argparse
import contextlib

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_filter import adapt_patch_and_pos_embed

_HEAD_PREFIXES = ('head.',)  # the ImageNet classifier: meaningless for a dense backbone


def read_state_dict(path, prefix=None):
    """Load ``path`` on the CPU and return its flat ``{name: tensor}`` weights.

    Unwraps a ``'state_dict'`` (mmengine) or ``'model'`` (DeiT-style ``main.py``,
    as the Adventurer releases) entry, strips a ``'module.'`` prefix carried by
    every key, then, when ``prefix`` is given (e.g. ``'backbone.'``), keeps only
    the keys that start with it and strips it. The training ``args`` (an
    ``argparse.Namespace``) saved beside the weights by DeiT-style ``main.py``
    are allowed through torch's ``weights_only`` loading.
    """
    # torch.serialization.safe_globals exists from torch 2.5 (weights_only is the default from 2.6).
    allow = getattr(torch.serialization, 'safe_globals', None)
    with allow([argparse.Namespace]) if allow else contextlib.nullcontext():
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise TypeError(f'{path} holds a {type(ckpt).__name__}, expected a dict of weights')
    for wrapper in ('state_dict', 'model'):
        if isinstance(ckpt.get(wrapper), dict):
            ckpt = ckpt[wrapper]
            break
    state_dict = dict(ckpt)
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if prefix:
        kept = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not kept:
            raise KeyError(f'no key of {path} starts with prefix {prefix!r}; its keys start like '
                           f'{sorted(state_dict)[:5]}; set init_cfg prefix to one of their prefixes '
                           f'or to None')
        state_dict = kept
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise TypeError(f'{path}: entries that are not tensors: {not_tensors[:10]}; '
                        f'pass a plain state dict or set init_cfg prefix')
    return state_dict


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
