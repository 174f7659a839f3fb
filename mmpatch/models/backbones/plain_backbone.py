"""What the plain (single-stride) backbones share: pretrained loading and layer-depth ranks."""
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ..utils.checkpoint_filter import load_state_dict_strict, read_state_dict


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
