"""Patch embedding for any patch size: a conv with kernel = stride = p."""
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """Cut an image into p x p patches and project each to ``embed_dims``.

    Inputs whose height or width ``p`` does not divide are zero-padded at the
    bottom/right (mmcv ``AdaptivePadding`` 'corner' mode), so the token grid is
    ``(ceil(H / p), ceil(W / p))`` and token (i, j) covers pixels
    ``[i*p, (i+1)*p) x [j*p, (j+1)*p)`` of the input.

    Returns tokens ``(B, N, C)`` in row-major order and the grid ``(h, w)``.
    """

    def __init__(self, in_channels=3, embed_dims=768, patch_size=16, bias=True):
        super().__init__()
        if not isinstance(patch_size, int) or not 1 <= patch_size <= 32:
            raise ValueError(f'patch_size must be an integer in 1..32, got {patch_size!r}')
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, patch_size, bias=bias)

    def forward(self, x):
        p = self.patch_size
        pad_h, pad_w = -x.shape[-2] % p, -x.shape[-1] % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x)
        hw = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), (int(hw[0]), int(hw[1]))
