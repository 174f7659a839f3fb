"""What the plain (single-stride) backbones share: the patch-size rule, the stored position grid,
pretrained loading and layer-depth ranks."""
import math

from mmengine.logging import print_log
from mmengine.model import BaseModule

from ...utils.errors import ConfigValueError
from ..utils.checkpoint_filter import load_state_dict_strict, read_state_dict

MAX_PATCH_SIZE = 32  # PatchEmbed's range: 1..32
MAX_POS_GRID = 64  # position tables are stored on at most 64 x 64 tokens


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
    """Base of PatchViT and PatchMamba.

    Subclasses set ``block_prefix`` (their blocks' state-dict prefix) and implement
    ``convert_state_dict(state_dict)`` (foreign checkpoint -> own keys, patch and
    position embeddings adapted); everything else that does not fit raises.
    """
    block_prefix = None

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
