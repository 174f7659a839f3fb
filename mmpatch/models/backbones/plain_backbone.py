"""What the plain (single-stride) backbones share: the arch lookup, the patch-size rule, the stored
position grid, out indices, the stem (patch embedding), token maps, pretrained loading and
layer-depth ranks. Each backbone keeps its own arch table; the logic is here once."""
import functools
import math

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ...utils.errors import ConfigValueError
from ..layers.patch_embed import PatchEmbed
from ..weights.checkpoint_filter import load_state_dict_strict, read_state_dict

MAX_PATCH_SIZE = 32  # PatchEmbed's range: 1..32
MAX_POS_GRID = 64  # position tables are stored on at most 64 x 64 tokens
ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
# torch.compile modes ``compile_blocks`` takes, and those that replay CUDA graphs
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
CUDA_GRAPH_MODES = ('reduce-overhead', 'max-autotune')


def call_block(block, x):
    return block(x)


@functools.lru_cache(maxsize=None)
def compiled_block_call(mode='default'):
    """``torch.compile`` of ``block(x)`` in ``mode``, shared by all blocks (one graph serves every
    block of a shape, since torch >= 2.5 inlines module parameters as graph inputs)."""
    return torch.compile(call_block, mode=mode)


def check_compile_blocks(compile_blocks, with_cp, modes=COMPILE_MODES):
    """``compile_blocks`` as a mode name or False; raises on a value outside ``modes``."""
    if not (isinstance(compile_blocks, bool) or compile_blocks in modes):
        raise ValueError(f'compile_blocks must be True, False or a torch.compile mode of '
                         f'{modes}, got {compile_blocks!r}')
    if with_cp and compile_blocks in CUDA_GRAPH_MODES:
        raise ValueError(f'compile_blocks={compile_blocks!r} (CUDA graphs) is not supported '
                         f'with with_cp (the checkpoint would replay the graphs inside the '
                         f'backward; not tried); use compile_blocks=True')
    return 'default' if compile_blocks is True else compile_blocks


def resolve_arch(arch, settings, defaults, required=('embed_dims', 'num_layers')):
    """``arch`` -> a dict of every architecture number.

    ``arch`` is a name of ``settings`` (a backbone's table ``{name: dict}``), an alias of
    ``ARCH_ALIASES``, or a dict with the ``required`` keys and any keys of ``defaults``; the
    entries it does not give are taken from ``defaults``.
    """
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in settings:
            raise ValueError(f'unknown arch {arch!r}; use one of {sorted(settings)} '
                             f'(or {sorted(ARCH_ALIASES)}) or a dict of explicit numbers')
        return dict(defaults, **settings[name])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
    required = set(required)
    if not required <= set(arch) or not set(arch) <= required | set(defaults):
        raise ValueError(f'arch dict needs keys {sorted(required)} (optional: '
                         f'{sorted(defaults)}), got {sorted(arch)}')
    return dict(defaults, **arch)


def normalize_out_indices(out_indices, num_layers):
    """Int or sequence, negatives counted from the end -> tuple of block indices."""
    indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
    if not indices:
        raise ValueError('out_indices is empty; give at least one block index')
    for i in indices:
        if not isinstance(i, int) or not -num_layers <= i < num_layers:
            raise ValueError(f'out_indices entry {i!r} is not a block index in '
                             f'[-{num_layers}, {num_layers - 1}]')
    return tuple(i % num_layers for i in indices)


def crop_hw(img_size):
    """``img_size`` (int or (h, w)) -> (h, w); ``ConfigValueError`` unless both are positive ints."""
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size) \
        if isinstance(img_size, (tuple, list)) else ()
    if len(hw) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in hw):
        raise ConfigValueError(f'img_size must be a positive int or (h, w), got {img_size!r}')
    return hw


def valid_patch_sizes(crop):
    """The patch sizes (1..32) that divide both sides of ``crop`` (int or (h, w))."""
    side = math.gcd(*crop_hw(crop))
    return [p for p in range(1, MAX_PATCH_SIZE + 1) if side % p == 0]


def patch_size_error(patch_size, crop, crop_key=None, owner='model.backbone', divides=True):
    """The message for a patch size that does not fit the crop, or None when it fits.

    The rule: ``patch_size`` is an int in 1..32 (every plain backbone, when it is built) and,
    with ``divides``, divides both sides of the training crop, so that a crop is cut into whole
    patches (the CLI, for segmentation: the backbone's ``img_size`` and the data preprocessor's
    ``size``). Both messages list the patch sizes that divide the crop. Inputs of other sizes
    still run: ``PatchEmbed`` zero-pads them to a multiple of p (whole-image and slide
    inference; detection, whose ``img_size`` only sizes the stored position table and whose
    padded images any p in 1..32 may cut, docs/detection.md).
    """
    crop_key = crop_key or f'{owner}.img_size'
    h, w = crop_hw(crop)
    valid = valid_patch_sizes((h, w))
    in_range = isinstance(patch_size, int) and not isinstance(patch_size, bool) \
        and 1 <= patch_size <= MAX_PATCH_SIZE
    if in_range and (patch_size in valid or not divides):
        return None
    if in_range:
        problem = f'{owner}.patch_size={patch_size} does not divide the {h}x{w} crop ({crop_key})'
    else:
        problem = (f'{owner}.patch_size={patch_size!r} is not a patch size (an integer in '
                   f'1..{MAX_PATCH_SIZE}) for the {h}x{w} crop ({crop_key})')
    nearest = min(valid, key=lambda p: (abs(p - patch_size), -p)) \
        if isinstance(patch_size, (int, float)) and not isinstance(patch_size, bool) else valid[-1]
    return (f'{problem}; valid patch sizes: {", ".join(map(str, valid))}; fix: '
            f'--cfg-options {owner}.patch_size={nearest} (or another of them), or a crop that '
            'p divides (img_size, data_preprocessor size and the pipeline\'s crop together)')


def check_patch_size(patch_size, crop, crop_key=None, owner='model.backbone', divides=True):
    """Raise ``ConfigValueError`` (see ``patch_size_error``) unless ``patch_size`` fits ``crop``."""
    message = patch_size_error(patch_size, crop, crop_key, owner, divides)
    if message:
        raise ConfigValueError(message)


def pos_grid_for(img_size, patch_size):
    """Stored position grid: ``min(ceil(img / p), 64)`` tokens per side."""
    return tuple(min(math.ceil(s / patch_size), MAX_POS_GRID) for s in crop_hw(img_size))


def plain_layer_depth(name, num_layers, block_prefix):
    """mmpretrain's layer-wise decay rank: embeddings 0, block i -> i + 1, the rest last."""
    num_depths = num_layers + 2
    if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed.'):
        return 0, num_depths
    if name.startswith(block_prefix):
        return int(name[len(block_prefix):].split('.')[0]) + 1, num_depths
    return num_depths - 1, num_depths


class PlainBackbone(BaseModule):
    """Base of PatchViT and PatchMamba: a patch embedding, then ``num_layers`` blocks of one
    width, each out index's tokens returned as a (B, C, ceil(H / p), ceil(W / p)) map.

    Builds what both share: ``embed_dims`` and ``num_layers`` from the parsed ``settings``, the
    patch embedding (``patch_size`` an int in 1..32, else ConfigValueError; that it divides the
    crop is checked where the crop is known: the CLI, for segmentation, since detection pads its
    images and ``img_size`` only sizes the stored position grid there), the stored position grid,
    the out indices, ``with_cp`` and ``final_norm``.

    ``final_norm`` has one meaning in every subclass, mmseg's ``VisionTransformer``'s: a norm
    after the last block, applied to the last block's output; a map is normed only when the last
    block is one of ``out_indices``, the maps of earlier blocks never are.

    Subclasses set ``block_prefix`` (their blocks' state-dict prefix) and implement
    ``convert_state_dict(state_dict)`` (foreign checkpoint -> own keys, patch and
    position embeddings adapted); everything else that does not fit raises. Their token
    sequences hold ``num_prefix_tokens`` tokens before the patch grid and
    ``num_suffix_tokens`` after it (class tokens).
    """
    block_prefix = None
    num_prefix_tokens = 0
    num_suffix_tokens = 0

    def __init__(self, settings, patch_size, img_size, in_channels, out_indices, with_cp,
                 final_norm, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = settings['embed_dims']
        self.num_layers = settings['num_layers']
        check_patch_size(patch_size, img_size, divides=False)
        self.patch_embed = PatchEmbed(in_channels, self.embed_dims, patch_size)
        self.patch_size = patch_size
        self.pos_grid = pos_grid_for(img_size, patch_size)
        self.out_indices = normalize_out_indices(out_indices, self.num_layers)
        self.with_cp = with_cp
        self.final_norm = final_norm

    def _to_map(self, tokens, hw):
        """Tokens (B, prefix + h*w + suffix, C) -> the patch tokens' (B, C, h, w) map."""
        x = tokens[:, self.num_prefix_tokens:tokens.shape[1] - self.num_suffix_tokens]
        return x.reshape(x.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous()

    def convert_state_dict(self, state_dict):
        raise NotImplementedError

    def init_weights(self):
        cfg = self.init_cfg
        pretrained = [c for c in (cfg if isinstance(cfg, list) else [cfg])
                      if isinstance(c, dict) and c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            return
        if not isinstance(cfg, dict) or set(cfg) - {'type', 'checkpoint', 'prefix'}:
            raise ValueError(f'{type(self).__name__} takes init_cfg=dict(type="Pretrained", '
                             f'checkpoint=PATH, prefix=None) alone, got {cfg!r}')
        self.load_pretrained(cfg['checkpoint'], cfg.get('prefix'))
        self._is_init = True

    def load_pretrained(self, path, prefix=None):
        """Load weights from ``path`` (``prefix``: keep and strip keys starting with it); any
        missing, unexpected or misshapen key raises, listing the keys."""
        state_dict = self.convert_state_dict(read_state_dict(path, prefix))
        load_state_dict_strict(self, state_dict, source=str(path))
        print_log(f'{type(self).__name__}: loaded {path} (prefix={prefix!r})', logger='current')

    def get_layer_depth(self, param_name, prefix=''):
        """``(depth, num_depths)`` of a parameter for layer-wise lr decay (mmpretrain's API)."""
        if not param_name.startswith(prefix):
            return self.num_layers + 1, self.num_layers + 2
        return plain_layer_depth(param_name[len(prefix):], self.num_layers, self.block_prefix)
