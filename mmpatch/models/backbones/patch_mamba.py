"""Adventurer (Mamba-2) backbone at any patch size (1..32) for mmseg and mmdet.

Follows the official Adventurer code (github wangf3014/Patch_Scaling,
``models_mamba.py``): patch tokens in row-major order, a class token appended
LAST, a learned absolute position table over all tokens (class slot last), then
blocks of

    x = norm(h); [flip all tokens but the last]; x = mixer([mean(x), x])[1:]; [flip back]
    h = h + drop_path(x);  h = h + drop_path(SwiGLU(norm_mlp(h)))

and a final RMSNorm ``norm_f``. Parameter names are the official ones, so
released checkpoints load after dropping the classifier ``head``.
"""
import math

import torch
import torch.nn as nn
from timm.layers import lecun_normal_, trunc_normal_
from torch.utils.checkpoint import checkpoint

from ...registry import register_seg_det_model
from ..layers.drop_path import DropPath
from ..layers.mamba2_mixer import IMPLS, Mamba2Mixer, mamba_ssm_kernels
from ..layers.pos_embed import resample_grid_pos_embed
from ..layers.swiglu import SwiGLU
from ..weights.adventurer_convert import adventurer_to_patch_mamba
from .plain_backbone import (COMPILE_MODES, CUDA_GRAPH_MODES, PlainBackbone, call_block,
                             check_compile_blocks, compiled_block_call, resolve_arch)

ARCH_SETTINGS = {
    'tiny': dict(embed_dims=256, num_layers=12),
    'small': dict(embed_dims=512, num_layers=12),
    'base': dict(embed_dims=768, num_layers=12),
    'large': dict(embed_dims=1024, num_layers=24),
}
# Optional arch-dict entries and their (official) defaults.
ARCH_DEFAULTS = dict(mlp_ratio=2.5, d_state=64, expand=2, headdim=64, d_conv=4, ngroups=1,
                     chunk_size=256)
FLIP_SCHEDULES = ('paper', 'alternate')
# compile_blocks modes: the Triton SSD kernels run outside the compiled graphs (graph breaks),
# so CUDA-graph modes would capture pieces only; they are not offered.
MAMBA_COMPILE_MODES = tuple(m for m in COMPILE_MODES if m not in CUDA_GRAPH_MODES)
NORM_EPS = 1e-5


def parse_arch(arch):
    """``arch`` name or dict -> dict(embed_dims, num_layers, mlp_ratio, d_state, expand, ...)."""
    return resolve_arch(arch, ARCH_SETTINGS, ARCH_DEFAULTS)


def flips_for(schedule, num_layers):
    """Which blocks flip the token order.

    'paper': the released code's ``n // 2 == 1`` (blocks 2 and 3 only), needed
    to reproduce released checkpoints; 'alternate': every other pair of blocks
    (``(n // 2) % 2 == 1``: 2, 3, 6, 7, ...), the paper's description.
    """
    if schedule == 'paper':
        return [n // 2 == 1 for n in range(num_layers)]
    if schedule == 'alternate':
        return [(n // 2) % 2 == 1 for n in range(num_layers)]
    raise ValueError(f'flip_schedule must be one of {FLIP_SCHEDULES}, got {schedule!r}')


def _flip_but_last(x):
    """Reverse the token order, keeping the last (class) token in place."""
    return torch.cat([x[:, :-1].flip(1), x[:, -1:]], dim=1)


class AdventurerBlock(nn.Module):
    """One Adventurer block (see the module docstring); ``flip`` is fixed per block."""

    def __init__(self, embed_dims, mixer_cfg, mlp_ratio=2.5, flip=False, drop_path=0.):
        super().__init__()
        self.flip = flip
        self.mixer = Mamba2Mixer(embed_dims, **mixer_cfg)
        self.norm = nn.RMSNorm(embed_dims, eps=NORM_EPS)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = SwiGLU(embed_dims, int(embed_dims * mlp_ratio))
        self.norm_mlp = nn.RMSNorm(embed_dims, eps=NORM_EPS)

    def forward(self, h):
        x = self.norm(h)
        if self.flip:
            x = _flip_but_last(x)
        # "Heading average": the mean of all tokens (class token included) leads the sequence.
        x = self.mixer(torch.cat([x.mean(dim=1, keepdim=True), x], dim=1))[:, 1:]
        if self.flip:
            x = _flip_but_last(x)
        h = h + self.drop_path(x)
        return h + self.drop_path(self.mlp(self.norm_mlp(h)))


@register_seg_det_model
class PatchMamba(PlainBackbone):
    """Adventurer backbone: returns NCHW maps at stride ``patch_size``.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (or 't' | 's' | 'b' | 'l'), or a
            dict with ``embed_dims`` and ``num_layers`` and optionally
            ``mlp_ratio`` (2.5), ``d_state`` (64), ``expand`` (2), ``headdim`` (64),
            ``d_conv`` (4), ``ngroups`` (1), ``chunk_size`` (256).
        patch_size: 1..32 (else ConfigValueError); for segmentation the CLI also
            requires that it divides the crop (``plain_backbone.patch_size_error``).
        img_size: training crop, int or (h, w); sets the stored position grid,
            ``min(ceil(img_size / p), 64)`` per side, resampled (bicubic) at run
            time to the actual token grid.
        in_channels: image channels.
        out_indices: block indices whose outputs are returned (negatives count
            from the end).
        drop_path_rate: stochastic depth; block i gets the official rate
            ``([0] + linspace(0, rate, num_layers))[i]``.
        with_cp: activation checkpointing per block while training.
        final_norm: an RMSNorm (``norm_f``) after the last block, applied to its
            output (mmseg's ``VisionTransformer``): the map of the last block is
            normed when it is one of ``out_indices``, earlier blocks' maps never are.
        flip_schedule: 'paper' (released code: blocks 2 and 3 flip) or
            'alternate' (blocks with ``(n // 2)`` odd flip).
        mamba_impl: 'auto' | 'torch' | 'mamba_ssm' (see ``Mamba2Mixer``).
        compile_blocks: ``torch.compile`` each block for training steps on CUDA:
            norms, flips, projections, the causal conv's SiLU and the SwiGLU MLP are
            fused by Inductor, while mamba_ssm's Triton kernels run as they are (the
            graph breaks around them); evaluation and CPU inputs run eagerly. ``True``
            (mode 'default') or a mode of ``MAMBA_COMPILE_MODES``.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix=None)`` loads
            official Adventurer or mmpatch weights strictly (``load_pretrained``).
    """
    block_prefix = 'layers.'  # state-dict prefix of the blocks (layer-depth ranks)
    num_suffix_tokens = 1  # the class token, last

    def __init__(self, arch='base', patch_size=16, img_size=224, in_channels=3, out_indices=-1,
                 drop_path_rate=0., with_cp=False, final_norm=True, flip_schedule='paper',
                 mamba_impl='auto', compile_blocks=False, init_cfg=None):
        settings = parse_arch(arch)
        if mamba_impl not in IMPLS:
            raise ValueError(f'mamba_impl must be one of {IMPLS}, got {mamba_impl!r}')
        compile_blocks = check_compile_blocks(compile_blocks, with_cp, MAMBA_COMPILE_MODES)
        super().__init__(settings, patch_size, img_size, in_channels, out_indices, with_cp,
                         final_norm, init_cfg=init_cfg)
        self.arch_settings = settings
        self.flip_schedule = flip_schedule
        self.compile_blocks = compile_blocks  # a mode or False
        flips = flips_for(flip_schedule, self.num_layers)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        num_pos = self.pos_grid[0] * self.pos_grid[1] + 1  # grid tokens, then the class slot
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, self.embed_dims))
        mixer_cfg = {k: settings[k] for k in ('d_state', 'expand', 'headdim', 'd_conv', 'ngroups',
                                              'chunk_size')}
        mixer_cfg['impl'] = mamba_impl
        rates = ([0.] + torch.linspace(0, drop_path_rate, self.num_layers).tolist())[:self.num_layers]
        self.layers = nn.ModuleList(
            AdventurerBlock(self.embed_dims, mixer_cfg, settings['mlp_ratio'], flip, rate)
            for flip, rate in zip(flips, rates))
        self.norm_f = nn.RMSNorm(self.embed_dims, eps=NORM_EPS) if final_norm else None
        self._init_random_weights()

    def _init_random_weights(self):
        """The official random init, used when no checkpoint is loaded."""
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        trunc_normal_(self.pos_embed, std=.02)
        trunc_normal_(self.cls_token, std=.02)
        for m in self.layers.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, Mamba2Mixer):  # mamba_ssm's prenorm-residual rescale
                nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5))
                with torch.no_grad():
                    m.out_proj.weight /= math.sqrt(self.num_layers)

    def convert_state_dict(self, state_dict):
        """Official Adventurer / mmpatch weights -> this model's keys, patch / position embeddings adapted."""
        return adventurer_to_patch_mamba(state_dict, self)

    def _embed(self, x):
        """Image -> tokens (B, h*w + 1, C) with position embeddings, class token last; and (h, w)."""
        x, hw = self.patch_embed(x)
        pos = resample_grid_pos_embed(self.pos_embed, hw, self.pos_grid, num_prefix=0, num_suffix=1)
        x = torch.cat([x, self.cls_token.expand(x.shape[0], -1, -1)], dim=1)
        return x + pos, hw

    def _run_blocks(self, x, keep):
        """Run every block; return ``{i: tokens after block i}`` for ``i`` in ``keep``, and (h, w)."""
        x, hw = self._embed(x)
        checkpointing = self.with_cp and self.training and torch.is_grad_enabled()
        call = call_block
        if self.compile_blocks and self.training and x.is_cuda:
            mamba_ssm_kernels()  # resolved eagerly, so that the compiled blocks read it as a constant
            call = compiled_block_call(self.compile_blocks)
        kept = {}
        for i, layer in enumerate(self.layers):
            x = checkpoint(call, layer, x, use_reentrant=False) if checkpointing else call(layer, x)
            if i in keep:
                kept[i] = x
        return kept, hw

    def forward_tokens(self, x):
        """Image -> (tokens, (h, w)): the last block's output before ``norm_f``.

        Tokens are (B, h*w + 1, C): the patch tokens in row-major order, then
        the class token (the official model's input of ``norm_f``).
        """
        kept, hw = self._run_blocks(x, {self.num_layers - 1})
        return kept[self.num_layers - 1], hw

    def forward(self, x):
        kept, hw = self._run_blocks(x, set(self.out_indices))
        last = self.num_layers - 1
        outs = []
        for i in self.out_indices:
            tokens = kept[i]
            if i == last and self.norm_f is not None:
                tokens = self.norm_f(tokens)
            outs.append(self._to_map(tokens, hw))
        return tuple(outs)
