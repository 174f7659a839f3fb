"""Convert a timm / DeiT ViT checkpoint into an mmpatch ``PatchViT`` checkpoint.

    python tools/model_converters/vit_timm_to_mmpatch.py SRC DST [--patch-size P] [--img-size S]

The architecture (width, depth, mlp ratio, cls token, patch size, position
grid) is read from SRC's weights. With ``--patch-size`` the patch-embed kernel
is resampled (FlexiViT); the position grid becomes ``min(ceil(S / P), 64)``
per side, ``S`` defaulting to SRC's grid times SRC's patch size (its training
resolution). The conversion is the one ``PatchViT`` runs on load
(``timm_vit_to_patch_vit``), followed by a strict load; DST holds
``{'state_dict': ..., 'meta': ...}``. The head count does not change any
weight, so DST fits PatchViT with any ``num_heads``.
"""
import argparse
import math

import torch

from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.weights.checkpoint_filter import load_state_dict_strict, read_state_dict
from mmpatch.models.weights.timm_vit_convert import timm_vit_to_patch_vit


def infer_vit_settings(state_dict):
    """Read width, depth, mlp ratio, patch size, channels, cls token and grid side from weights."""
    if 'patch_embed.proj.weight' not in state_dict:
        raise KeyError('no patch_embed.proj.weight: not a timm-style ViT checkpoint '
                       '(pass --prefix if its keys carry one, e.g. backbone.)')
    embed_dims, in_channels, kh, kw = state_dict['patch_embed.proj.weight'].shape
    if kh != kw:
        raise ValueError(f'patch-embed kernel {kh}x{kw} is not square')
    block_ids = {int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.')}
    if not block_ids:
        raise KeyError('no blocks.N.* weights: not a timm-style ViT checkpoint')
    mlp_ratio = state_dict['blocks.0.mlp.fc1.weight'].shape[0] / embed_dims
    num_prefix = ('cls_token' in state_dict) + ('dist_token' in state_dict)
    num_grid = state_dict['pos_embed'].shape[1] - num_prefix
    side = math.isqrt(num_grid)
    if side * side != num_grid:
        raise ValueError(f'position table has {num_grid} grid tokens, not a square grid')
    return dict(embed_dims=embed_dims, num_layers=max(block_ids) + 1, mlp_ratio=mlp_ratio,
                patch_size=kh, in_channels=in_channels,
                with_cls_token='cls_token' in state_dict, grid_side=side)


def convert(src, dst, patch_size=None, img_size=None, prefix=None):
    """Convert ``src`` into a PatchViT checkpoint at ``dst``; return the built model."""
    state_dict = read_state_dict(src, prefix)
    found = infer_vit_settings(state_dict)
    patch_size = patch_size or found['patch_size']
    img_size = img_size or found['grid_side'] * found['patch_size']
    num_heads = max(found['embed_dims'] // 64, 1)  # any divisor would do: heads hold no weights
    arch = dict(embed_dims=found['embed_dims'], num_layers=found['num_layers'],
                num_heads=num_heads, mlp_ratio=found['mlp_ratio'])
    model = PatchViT(arch=arch, patch_size=patch_size, img_size=img_size,
                     in_channels=found['in_channels'], with_cls_token=found['with_cls_token'])
    load_state_dict_strict(model, timm_vit_to_patch_vit(state_dict, model), source=str(src))
    meta = dict(source=str(src), arch=arch, patch_size=patch_size, img_size=img_size,
                with_cls_token=found['with_cls_token'])
    torch.save(dict(state_dict=model.state_dict(), meta=meta), dst)
    return model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='timm / DeiT ViT checkpoint')
    parser.add_argument('dst', help='output mmpatch checkpoint')
    parser.add_argument('--patch-size', type=int, default=None,
                        help='target patch size (default: the checkpoint\'s)')
    parser.add_argument('--img-size', type=int, default=None,
                        help='training crop that sets the position grid '
                             '(default: the checkpoint\'s grid x its patch size)')
    parser.add_argument('--prefix', default=None, help='keep and strip keys with this prefix')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = convert(args.src, args.dst, args.patch_size, args.img_size, args.prefix)
    print(f'wrote {args.dst}: PatchViT dims={model.embed_dims} layers={model.num_layers} '
          f'patch={model.patch_size} pos_grid={model.pos_grid}')


if __name__ == '__main__':
    main()
