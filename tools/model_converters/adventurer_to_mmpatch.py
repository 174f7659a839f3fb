"""Convert an official Adventurer checkpoint into an mmpatch ``PatchMamba`` checkpoint.

    python tools/model_converters/adventurer_to_mmpatch.py SRC DST [--patch-size P] [--img-size S]

The architecture (width, depth, mlp ratio, Mamba-2 sizes, patch size,
position grid) is read from SRC's weights (``ngroups`` is taken as 1, as in
every released model). With ``--patch-size`` the patch-embed kernel is
resampled (FlexiViT); the position grid becomes ``min(ceil(S / P), 64)`` per
side, ``S`` defaulting to SRC's grid times SRC's patch size (its training
resolution). The conversion is the one ``PatchMamba`` runs on load
(``adventurer_to_patch_mamba``: drops ``head.*``), followed by a strict load;
DST holds ``{'state_dict': ..., 'meta': ...}``.
"""
import argparse
import math

import torch

from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.weights.adventurer_convert import adventurer_to_patch_mamba
from mmpatch.models.weights.checkpoint_filter import load_state_dict_strict, read_state_dict


def infer_adventurer_settings(state_dict):
    """Read the arch dict, patch size, channels and position-grid side from Adventurer weights."""
    for key in ('patch_embed.proj.weight', 'pos_embed', 'layers.0.mixer.A_log'):
        if key not in state_dict:
            raise KeyError(f'no {key}: not an Adventurer checkpoint '
                           f'(pass --prefix if its keys carry one, e.g. backbone.)')
    embed_dims, in_channels, kh, kw = state_dict['patch_embed.proj.weight'].shape
    if kh != kw:
        raise ValueError(f'patch-embed kernel {kh}x{kw} is not square')
    num_layers = max(int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')) + 1
    hidden = state_dict['layers.0.mlp.w1.weight'].shape[0]
    d_inner = state_dict['layers.0.mixer.out_proj.weight'].shape[1]
    nheads = state_dict['layers.0.mixer.A_log'].shape[0]
    conv_dim, _, d_conv = state_dict['layers.0.mixer.conv1d.weight'].shape
    arch = dict(embed_dims=embed_dims, num_layers=num_layers, mlp_ratio=hidden / embed_dims,
                expand=d_inner // embed_dims, headdim=d_inner // nheads,
                d_state=(conv_dim - d_inner) // 2, d_conv=d_conv)
    if int(embed_dims * arch['mlp_ratio']) != hidden or arch['expand'] * embed_dims != d_inner:
        raise ValueError(f'cannot express mlp hidden {hidden} / mixer width {d_inner} of width '
                         f'{embed_dims} as PatchMamba mlp_ratio / expand')
    num_grid = state_dict['pos_embed'].shape[1] - 1  # the class slot is last
    side = math.isqrt(num_grid)
    if side * side != num_grid:
        raise ValueError(f'position table has {num_grid} grid tokens, not a square grid')
    return dict(arch=arch, patch_size=kh, in_channels=in_channels, grid_side=side)


def convert(src, dst, patch_size=None, img_size=None, prefix=None):
    """Convert ``src`` into a PatchMamba checkpoint at ``dst``; return the built model."""
    state_dict = read_state_dict(src, prefix)
    found = infer_adventurer_settings(state_dict)
    patch_size = patch_size or found['patch_size']
    img_size = img_size or found['grid_side'] * found['patch_size']
    model = PatchMamba(arch=found['arch'], patch_size=patch_size, img_size=img_size,
                       in_channels=found['in_channels'])
    load_state_dict_strict(model, adventurer_to_patch_mamba(state_dict, model), source=str(src))
    meta = dict(source=str(src), arch=found['arch'], patch_size=patch_size, img_size=img_size)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), dst)
    return model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official Adventurer checkpoint')
    parser.add_argument('dst', help='output mmpatch checkpoint')
    parser.add_argument('--patch-size', type=int, default=None,
                        help="target patch size (default: the checkpoint's)")
    parser.add_argument('--img-size', type=int, default=None,
                        help='training crop that sets the position grid '
                             "(default: the checkpoint's grid x its patch size)")
    parser.add_argument('--prefix', default=None, help='keep and strip keys with this prefix')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = convert(args.src, args.dst, args.patch_size, args.img_size, args.prefix)
    print(f'wrote {args.dst}: PatchMamba dims={model.embed_dims} layers={model.num_layers} '
          f'patch={model.patch_size} pos_grid={model.pos_grid}')


if __name__ == '__main__':
    main()
