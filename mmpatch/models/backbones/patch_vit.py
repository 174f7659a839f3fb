"""Plain ViT backbone at any patch size (1..32) for mmseg and mmdet."""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch.utils import checkpoint as torch_checkpoint

from ...registry import register_seg_det_model
from ..layers.drop_path import DropPath
from ..layers.pos_embed import resample_grid_pos_embed
from ..layers.sdpa_backend import ATTN_BACKENDS, resolve_sdpa_backends, sdpa_backend_context
from ..weights.timm_vit_convert import timm_vit_to_patch_vit
from .plain_backbone import (CUDA_GRAPH_MODES, PlainBackbone, call_block, check_compile_blocks,
                             compiled_block_call, resolve_arch)

ARCH_SETTINGS = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4.),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4.),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4.),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16, mlp_ratio=4.),
}
ARCH_DEFAULTS = dict(mlp_ratio=4.)  # optional arch-dict entries and their defaults
LN_EPS = 1e-6  # as timm


def parse_arch(arch):
    """``arch`` name or dict -> dict(embed_dims, num_layers, num_heads, mlp_ratio)."""
    arch = resolve_arch(arch, ARCH_SETTINGS, ARCH_DEFAULTS,
                        required=('embed_dims', 'num_layers', 'num_heads'))
    if arch['embed_dims'] % arch['num_heads']:
        raise ValueError(f"embed_dims {arch['embed_dims']} is not divisible by "
                         f"num_heads {arch['num_heads']}")
    return arch


# The fused attention kernels whose outputs selective checkpointing keeps (absent ones skipped).
_ATTENTION_OPS = tuple(getattr(torch.ops.aten, name).default for name in (
    '_scaled_dot_product_flash_attention', '_scaled_dot_product_efficient_attention',
    '_scaled_dot_product_cudnn_attention', '_scaled_dot_product_flash_attention_for_cpu')
    if hasattr(torch.ops.aten, name))


def _run_block(call, block, x, backends):
    """One block under the chosen attention kernels (re-entered when a checkpoint recomputes)."""
    with sdpa_backend_context(backends), _uncached_autocast(x.device.type):
        return call(block, x)


_AUTOCAST_DEVICES = ('cpu', 'cuda', 'xpu', 'mps', 'hpu')  # e.g. 'meta' (FLOP counting) has none


def _uncached_autocast(device_type):
    """Autocast as set by the caller, but without its weight-cast cache.

    A cached cast made outside a checkpointed block (e.g. by an earlier forward in the
    same autocast region) is not redone when the block recomputes, which breaks
    selective checkpointing's op-by-op replay; uncached casts replay identically.
    """
    get_dtype = getattr(torch, 'get_autocast_dtype', None)  # torch >= 2.4
    if get_dtype is None or device_type not in _AUTOCAST_DEVICES \
            or not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=get_dtype(device_type), cache_enabled=False)


def _save_attention_context():
    """Selective checkpointing: keep the attention kernels' outputs, recompute the rest."""
    return torch_checkpoint.create_selective_checkpoint_contexts(list(_ATTENTION_OPS))


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused qkv linear and fused SDPA (no N x N matrix)."""

    def __init__(self, embed_dims, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dims) \
            .permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, d)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, embed_dims, hidden_dims):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block, parameter names as timm's ``Block``."""

    def __init__(self, embed_dims, num_heads, mlp_ratio=4., drop_path=0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=LN_EPS)
        self.attn = SelfAttention(embed_dims, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(embed_dims, eps=LN_EPS)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio))

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@register_seg_det_model
class PatchViT(PlainBackbone):
    """Plain ViT (timm parameter names) at any patch size 1..32, for dense prediction.

    Inputs whose height or width the patch size ``p`` does not divide are
    zero-padded at the bottom/right (``PatchEmbed``), so every output map is
    ``(B, C, ceil(H / p), ceil(W / p))``.

    The absolute position table is stored on ``min(ceil(img_size / p), 64)``
    tokens per side and resampled (bicubic) at run time to the token grid of
    the actual input, so any input size works (whole-image and slide
    inference); nothing depending on the input size is cached.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (or 't' | 's' | 'b' | 'l'), or
            a dict with embed_dims, num_layers, num_heads and optional mlp_ratio.
        patch_size: patch side p, an integer in 1..32 (else ConfigValueError); for
            segmentation the CLI also requires that it divides the crop
            (``plain_backbone.patch_size_error``).
        img_size: training crop, int or (h, w); sets the stored position grid.
        in_channels: image channels.
        out_indices: block(s) whose output is returned (negative: from the end).
        with_cls_token: prepend a class token (dropped from the outputs); its
            position slot comes first in ``pos_embed`` as in timm.
        final_norm: a LayerNorm (``norm``) after the last block, applied to its
            output (mmseg's ``VisionTransformer``): the map of the last block is
            normed when it is one of ``out_indices``, earlier blocks' maps never are.
        drop_path_rate: stochastic depth, increasing linearly to this rate.
        with_cp: activation checkpointing per block while training.
        cp_save_attention: with ``with_cp`` (and blocks not compiled), keep each
            attention kernel's outputs (selective checkpointing), so the backward
            pass recomputes the norms, linears and MLP but never the attention,
            which dominates at small patches; costs one token map per block. False
            recomputes the whole block.
        attn_backend: SDPA kernel: 'auto' (fastest that supports the call, see
            ``choose_sdpa_backends``; always falls back to math), 'default'
            (PyTorch's own choice), or strictly one of 'cudnn', 'flash',
            'efficient', 'math' (raises where that kernel cannot run).
        compile_blocks: ``torch.compile`` each block for training steps on CUDA
            (fuses norms, activations, bias and residual adds); evaluation and CPU
            inputs run eagerly. Needs Triton on the GPU machine. ``True`` (mode
            'default') or a mode of ``plain_backbone.COMPILE_MODES``: 'reduce-overhead' (and
            'max-autotune') replay each block as a CUDA graph (no per-kernel launch cost on
            the host; not with ``with_cp``); each training forward then starts a new step of
            the graphs, which overwrites the outputs of the forward before (one forward per
            training step).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix=None)``
            loads timm / DeiT / mmpatch weights strictly (see ``load_pretrained``).
    """
    block_prefix = 'blocks.'  # state-dict prefix of the blocks (layer-depth ranks)

    def __init__(self, arch='base', patch_size=16, img_size=224, in_channels=3, out_indices=-1,
                 with_cls_token=True, final_norm=True, drop_path_rate=0., with_cp=False,
                 cp_save_attention=True, attn_backend='auto', compile_blocks=False, init_cfg=None):
        settings = parse_arch(arch)
        if attn_backend not in ATTN_BACKENDS:
            raise ValueError(f'attn_backend must be one of {ATTN_BACKENDS}, got {attn_backend!r}')
        compile_blocks = check_compile_blocks(compile_blocks, with_cp)
        super().__init__(settings, patch_size, img_size, in_channels, out_indices, with_cp,
                         final_norm, init_cfg=init_cfg)
        self.num_heads = settings['num_heads']
        self.cp_save_attention = cp_save_attention
        self.attn_backend = attn_backend
        self.compile_blocks = compile_blocks  # a mode or False
        self.num_prefix_tokens = 1 if with_cls_token else 0

        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims)) if with_cls_token else None
        num_pos = self.num_prefix_tokens + self.pos_grid[0] * self.pos_grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, self.embed_dims))
        rates = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.blocks = nn.ModuleList(
            ViTBlock(self.embed_dims, self.num_heads, settings['mlp_ratio'], rate) for rate in rates)
        self.norm = nn.LayerNorm(self.embed_dims, eps=LN_EPS) if final_norm else None
        self._init_random_weights()

    def _init_random_weights(self):
        """timm-style random init, used when no checkpoint is loaded."""
        trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)

    def convert_state_dict(self, state_dict):
        """Timm / DeiT / mmpatch ViT weights -> this model's keys, patch / position embeddings adapted."""
        return timm_vit_to_patch_vit(state_dict, self)

    def _embed(self, x):
        """Image -> tokens with position embeddings (B, prefix + h*w, C), and the grid (h, w)."""
        x, hw = self.patch_embed(x)
        pos = resample_grid_pos_embed(self.pos_embed, hw, self.pos_grid, self.num_prefix_tokens)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        else:
            x = x.contiguous()  # PatchEmbed's tokens are a transposed view
        return x + pos, hw

    def _block_call(self, x):
        """``block(x)``, compiled or eager (see ``compile_blocks``)."""
        if self.compile_blocks and self.training and x.is_cuda:
            return compiled_block_call(self.compile_blocks)
        return call_block

    def _checkpoint_kwargs(self, call):
        kwargs = dict(use_reentrant=False)
        if self.cp_save_attention and call is call_block and _ATTENTION_OPS and \
                hasattr(torch_checkpoint, 'create_selective_checkpoint_contexts'):
            kwargs['context_fn'] = _save_attention_context
        return kwargs

    def forward(self, x):
        x, hw = self._embed(x)
        backends = resolve_sdpa_backends(self.attn_backend, x, self.embed_dims // self.num_heads)
        call = self._block_call(x)
        if call is not call_block and self.compile_blocks in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()  # the last forward's outputs may go
        checkpointing = self.with_cp and self.training and torch.is_grad_enabled()
        cp_kwargs = self._checkpoint_kwargs(call) if checkpointing else None
        maps = {}
        for i, block in enumerate(self.blocks):
            if checkpointing:
                x = torch_checkpoint.checkpoint(_run_block, call, block, x, backends, **cp_kwargs)
            else:
                x = _run_block(call, block, x, backends)
            if i == self.num_layers - 1 and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                maps[i] = self._to_map(x, hw)
        return tuple(maps[i] for i in self.out_indices)
