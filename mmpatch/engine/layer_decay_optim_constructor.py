"""Layer-wise learning-rate decay for plain backbones (BEiT / MAE / ViTDet fine-tuning)."""
import logging

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

BACKBONE_PREFIX = 'backbone.'
DEFAULT_NO_DECAY_NAMES = ('pos_embed', 'cls_token')
LAYER_DECAY_KEYS = {'layer_decay_rate', 'head_lr_mult', 'no_decay_names', 'bypass_duplicate'}


def layer_decay_lr_scale(layer_depth, num_depths, decay_rate):
    """lr multiplier of a parameter at ``layer_depth`` of ``num_depths``: the last depth gets 1."""
    if not 0 <= layer_depth < num_depths:
        raise ValueError(f'layer_depth {layer_depth} is outside [0, {num_depths})')
    return decay_rate ** (num_depths - 1 - layer_depth)


def is_no_decay(name, param, no_decay_names=DEFAULT_NO_DECAY_NAMES):
    """No weight decay for 1-D tensors (norms, biases) and names whose last part is listed."""
    return param.ndim <= 1 or name.rsplit('.', 1)[-1] in no_decay_names


def is_head_param(name):
    """True for parameters of a segmentor's heads: top-level modules named ``*_head``."""
    return name.split('.', 1)[0].endswith('_head')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` plus mmpretrain-style layer-wise lr decay.

    With ``paramwise_cfg=dict(layer_decay_rate=r)`` a backbone parameter gets
    ``lr = base_lr * r ** (num_depths - 1 - depth)``, where ``(depth,
    num_depths) = model.backbone.get_layer_depth(name)`` (name without the
    ``backbone.`` prefix); the heads' parameters (``decode_head``,
    ``auxiliary_head``: top-level modules named ``*_head``) get
    ``base_lr * head_lr_mult`` (default 1), the rest (neck) the base lr.
    Weight decay is 0 for 1-D parameters (norms, biases) and for parameters
    whose last name part is in ``no_decay_names`` (default pos_embed,
    cls_token); the rest get the base weight decay. Parameters with the same
    (lr, weight decay) share one param group.

    ``paramwise_cfg`` keys: ``layer_decay_rate``, ``head_lr_mult``, ``no_decay_names``,
    ``bypass_duplicate`` (skip, rather than reject, a parameter shared by two
    modules). Without ``layer_decay_rate`` this is exactly mmengine's default
    constructor (all of its ``paramwise_cfg`` keys work then).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        cfg = self.paramwise_cfg
        self.layer_decay_rate = cfg.get('layer_decay_rate')
        if self.layer_decay_rate is None:
            return
        unsupported = set(cfg) - LAYER_DECAY_KEYS
        if unsupported:
            raise ValueError(f'paramwise_cfg keys {sorted(unsupported)} are not supported with '
                             f'layer_decay_rate; use only {sorted(LAYER_DECAY_KEYS)}')
        rate = self.layer_decay_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'layer_decay_rate must be a number in (0, 1], got {rate!r}')
        if self.base_lr is None:
            raise ValueError('layer_decay_rate needs optimizer.lr to be set')
        mult = cfg.get('head_lr_mult', 1.)
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
            raise ValueError(f'head_lr_mult must be a positive number, got {mult!r}')
        self.head_lr_mult = float(mult)
        self.no_decay_names = tuple(cfg.get('no_decay_names', DEFAULT_NO_DECAY_NAMES))
        self.bypass_duplicate = cfg.get('bypass_duplicate', False)

    def add_params(self, params, module, prefix='', is_dcn_module=None):
        if self.layer_decay_rate is None:
            super().add_params(params, module, prefix, is_dcn_module)
            return
        if is_model_wrapper(module):
            module = module.module
        backbone = getattr(module, 'backbone', None)
        if not callable(getattr(backbone, 'get_layer_depth', None)):
            raise TypeError(f'layer_decay_rate needs model.backbone.get_layer_depth(name); '
                            f'{type(backbone).__name__} has none: remove layer_decay_rate from '
                            f'paramwise_cfg or use a backbone that ranks its parameters')
        groups = {}  # (lr scale, decays) -> param group
        seen = {}  # id(param) -> first name
        for name, param in module.named_parameters(remove_duplicate=False):
            if id(param) in seen:
                if not self.bypass_duplicate:
                    raise ValueError(f'parameter {name} is the same tensor as {seen[id(param)]}; '
                                     f'set paramwise_cfg.bypass_duplicate=True to add it once')
                print_log(f'{name} is a duplicate of {seen[id(param)]}: skipped '
                          f'(bypass_duplicate=True)', logger='current', level=logging.WARNING)
                continue
            seen[id(param)] = name
            if not param.requires_grad:
                continue
            scale = self.head_lr_mult if is_head_param(name) else 1.
            if name.startswith(BACKBONE_PREFIX):
                depth, num_depths = backbone.get_layer_depth(name[len(BACKBONE_PREFIX):])
                scale = layer_decay_lr_scale(depth, num_depths, self.layer_decay_rate)
            decays = not is_no_decay(name, param, self.no_decay_names)
            group = groups.get((scale, decays))
            if group is None:
                group = groups[(scale, decays)] = dict(params=[], lr=self.base_lr * scale,
                                                       lr_scale=scale)
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd if decays else 0.
            group['params'].append(param)
        for (scale, decays), group in sorted(groups.items(), key=lambda kv: kv[0]):
            print_log(f'layer decay: lr x {scale:.4g}, weight decay {"on" if decays else "off"}: '
                      f'{len(group["params"])} tensors', logger='current', level=logging.INFO)
            params.append(group)

