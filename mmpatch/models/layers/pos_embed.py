"""Absolute position embeddings resampled to the token grid of the actual input."""
import torch


def resample_grid_pos_embed(pos_embed, new_hw, old_hw, num_prefix=0, num_suffix=0,
                            mode='bicubic'):
    """Resample a ``(1, prefix + h*w + suffix, C)`` position table to a new grid.

    Non-grid tokens (a cls token first as in ViT, or last as in Adventurer)
    are kept unchanged; the grid part is interpolated as an image.
    """
    new_hw, old_hw = tuple(new_hw), tuple(old_hw)
    n_grid = pos_embed.shape[1] - num_prefix - num_suffix
    if n_grid != old_hw[0] * old_hw[1]:
        raise ValueError(f'position embedding has {n_grid} grid tokens, '
                         f'which is not the grid {old_hw[0]}x{old_hw[1]}')
    if new_hw == old_hw:
        return pos_embed
    prefix = pos_embed[:, :num_prefix]
    grid = pos_embed[:, num_prefix:num_prefix + n_grid]
    suffix = pos_embed[:, num_prefix + n_grid:]
    dtype = grid.dtype
    grid = grid.reshape(1, old_hw[0], old_hw[1], -1).permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.interpolate(grid, size=new_hw, mode=mode, align_corners=False,
                                           antialias=mode in ('bilinear', 'bicubic'))
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], -1).to(dtype)
    return torch.cat([prefix, grid, suffix], dim=1)
