"""Adapt a checkpoint to a backbone on load, timm-style, and load it strictly.

Only two shape changes are adapted, both on purpose: the patch-embed kernel
(FlexiViT resampling to the new patch size) and the position-embedding grid.
Any other difference is an error that lists the keys: nothing is silently
left at its random init.
"""
import argparse
import contextlib
import math

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from timm.layers import resample_patch_embed

from ..layers.pos_embed import resample_grid_pos_embed


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit the model it is loaded into."""


def adapt_patch_and_pos_embed(state_dict, model, num_prefix=0, num_suffix=0,
                              patch_key='patch_embed.proj.weight', pos_key='pos_embed',
                              old_hw=None, new_hw=None):
    """Return a copy of ``state_dict`` with patch and position embeddings resampled to ``model``.

    ``old_hw`` / ``new_hw`` are the position grids of the checkpoint and the
    model; each one left ``None`` is taken as square (timm checkpoints are).
    """
    state_dict = dict(state_dict)
    own = model.state_dict()
    w = state_dict.get(patch_key)
    if w is not None and patch_key in own and w.shape[-2:] != own[patch_key].shape[-2:] \
            and w.shape[:2] == own[patch_key].shape[:2]:
        state_dict[patch_key] = resample_patch_embed(
            w.float(), list(own[patch_key].shape[-2:])).to(w.dtype)
    pos = state_dict.get(pos_key)
    if pos is not None and pos_key in own and pos.shape != own[pos_key].shape \
            and pos.shape[-1] == own[pos_key].shape[-1]:
        old_hw = old_hw or _square_grid(pos.shape[1] - num_prefix - num_suffix)
        new_hw = new_hw or _square_grid(own[pos_key].shape[1] - num_prefix - num_suffix)
        if old_hw and new_hw:
            state_dict[pos_key] = resample_grid_pos_embed(pos, new_hw, old_hw, num_prefix, num_suffix)
    return state_dict


def _square_grid(num_tokens):
    """``(side, side)`` if ``num_tokens`` is a square number, else ``None``."""
    side = math.isqrt(max(num_tokens, 0))
    return (side, side) if side > 0 and side * side == num_tokens else None


MISMATCH_FIX = ('fix: use a checkpoint of this architecture and width (embed_dims, num_layers), '
                'or set the config\'s arch to the checkpoint\'s')


def state_dict_mismatch(model, state_dict, source='checkpoint'):
    """A message listing the missing, unexpected and misshapen keys; None when ``state_dict`` fits."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shape = {k: tuple(getattr(state_dict[k], 'shape', ())) for k in set(own) & set(state_dict)}
    misshapen = sorted(f'{k}: {s} in {source}, {tuple(own[k].shape)} in model'
                       for k, s in shape.items() if s != tuple(own[k].shape))
    if not (missing or unexpected or misshapen):
        return None
    lines = [f'{source} does not fit {type(model).__name__}:']
    for name, keys in (('missing', missing), ('unexpected', unexpected), ('shape mismatch', misshapen)):
        if keys:
            lines.append(f'  {name} ({len(keys)}): ' + ', '.join(keys[:20]) + (' ...' if len(keys) > 20 else ''))
    lines.append(f'  {MISMATCH_FIX}')
    return '\n'.join(lines)


def load_state_dict_strict(model, state_dict, source='checkpoint'):
    """Load ``state_dict`` into ``model``; raise listing every missing, unexpected or misshapen key."""
    message = state_dict_mismatch(model, state_dict, source)
    if message:
        raise CheckpointMismatchError(message)
    with torch.no_grad():
        model.load_state_dict(state_dict, strict=True)


def read_state_dict(path, prefix=None):
    """Load ``path`` on the CPU and return its flat ``{name: tensor}`` weights.

    Unwraps a ``'state_dict'`` (mmengine) or ``'model'`` (DeiT-style ``main.py``,
    as DeiT and the Adventurer releases) entry, strips a ``'module.'`` prefix carried by
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
