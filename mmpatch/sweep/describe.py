"""What a sweep cell's config is, read from the config itself: its task, backbone, patch size,
decoder role, and its model's size (parameters, FLOPs).

The task comes from the config's ``default_scope``: 'mmseg' is segmentation ('seg'), 'mmdet'
detection ('det'). The decoder role is the sweep's second axis (``mmpatch.sweep.stats.Task``):

- segmentation: the decode head, ``LinearHead`` -> 'linear', ``UPerHead`` -> 'upernet';
- detection: the neck, read from its content, not from the file name: a ``PatchPyramidNeck``
  with one input map (``in_channels`` an int or a one-entry list) is ViTDet's simple pyramid
  from the last block, 'simple'; with several (``in_channels`` a list, one per output level,
  fed by as many backbone ``out_indices``) it is a pyramid from several depths, 'multidepth'.
  A config whose file name ends in the other role's name is refused, as is any other neck.
"""
import os.path as osp

import torch

from mmpatch.utils.errors import UserError

TASK_OF_SCOPE = {'mmseg': 'seg', 'mmdet': 'det'}
HEAD_NAMES = {'LinearHead': 'linear', 'UPerHead': 'upernet'}
NECK_ROLES = ('simple', 'multidepth')
#: mmdet's standard test size (w, h), for a detector whose test pipeline names no Resize scale.
DEFAULT_DET_SCALE = (1333, 800)


def _name(cfg):
    return cfg.filename or 'the config'


def task_of(cfg):
    """'seg' (default_scope 'mmseg') or 'det' ('mmdet')."""
    scope = cfg.get('default_scope')
    if scope not in TASK_OF_SCOPE:
        raise UserError(f"{_name(cfg)}: default_scope {scope!r} is neither 'mmseg' (segmentation) "
                        "nor 'mmdet' (detection); the sweep runs one of those")
    return TASK_OF_SCOPE[scope]


def backbone_label(backbone):
    """'PatchViT (base)', or 'PatchViT (64d x 4 blocks)' for explicit numbers."""
    arch = backbone.get('arch', '')
    if not isinstance(arch, str):  # explicit numbers, e.g. a toy-size model
        arch = f"{arch['embed_dims']}d x {arch['num_layers']} blocks"
    return f"{backbone['type']} ({arch})"


def neck_role(cfg):
    """'simple' or 'multidepth' from the detector's neck (module docstring)."""
    neck = cfg.model.get('neck')
    if not isinstance(neck, dict) or neck.get('type') != 'PatchPyramidNeck':
        found = neck.get('type') if isinstance(neck, dict) else neck
        raise UserError(f'{_name(cfg)}: the sweep tells a detector\'s neck role (simple or '
                        f'multidepth) from a PatchPyramidNeck\'s in_channels; this config\'s '
                        f'model.neck is {found!r}')
    in_channels = neck.get('in_channels')
    n = 1 if isinstance(in_channels, int) else len(in_channels or ())
    if n == 0:
        raise UserError(f'{_name(cfg)}: model.neck.in_channels is {in_channels!r}; give an int '
                        '(simple pyramid) or a list, one per output level (multidepth)')
    role = 'multidepth' if n > 1 else 'simple'
    last = osp.splitext(osp.basename(cfg.filename or ''))[0].rsplit('_', 1)[-1]
    if last in NECK_ROLES and last != role:
        raise UserError(f'{_name(cfg)}: the file name says {last!r} but model.neck.in_channels '
                        f'({in_channels!r}) makes it {role!r} (one input map: simple; one per '
                        'output level, from several backbone out_indices: multidepth); fix the '
                        'neck or the name')
    return role


def describe_model(cfg):
    """(backbone label, patch size, decoder role) from the config itself; the role is the
    head's ('linear' / 'upernet') for segmentation, the neck's ('simple' / 'multidepth') for
    detection."""
    backbone = cfg.model.backbone
    if task_of(cfg) == 'det':
        role = neck_role(cfg)
    else:
        head = cfg.model.decode_head
        role = HEAD_NAMES.get(head['type'], head['type'])
    return backbone_label(backbone), int(backbone['patch_size']), role


def det_input_size(cfg):
    """(h, w) of a detector's FLOPs input: the test pipeline's Resize scale (mmcv's (w, h);
    mmdet's standard 1333 x 800 when it names none), padded up to the data preprocessor's
    ``pad_size_divisor``: what reaches the backbone for an image that fills the scale."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline') or []
    scale = next((t['scale'] for t in pipeline if isinstance(t, dict) and 'Resize' in
                  str(t.get('type', '')) and t.get('scale') is not None), DEFAULT_DET_SCALE)
    w, h = (scale, scale) if isinstance(scale, int) else scale
    divisor = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor') or 1
    return -(-int(h) // divisor) * divisor, -(-int(w) // divisor) * divisor


def flops_input_size(cfg):
    """(h, w) of the FLOPs input: the training crop (segmentation, 512 x 512 when the config
    names none) or :func:`det_input_size` (detection)."""
    if task_of(cfg) == 'det':
        return det_input_size(cfg)
    return tuple(cfg.get('crop_size', (512, 512)))


def measure_model(cfg, input_hw):
    """Parameters (M) of the config's whole model and forward GFLOPs on one ``input_hw`` input:
    a segmentor's whole forward (``mode='tensor'``); a detector's backbone + neck
    (``extract_feat``), since the cost of its RPN and RoI heads depends on the number of
    proposals, and their NMS cannot run on the 'meta' tensors the count uses."""
    from mmengine.registry import DefaultScope

    import mmpatch.models  # noqa: F401  (registers the backbones, necks and heads)
    from mmpatch.utils.flops import DetectorFeatures, count_forward_flops
    if task_of(cfg) == 'det':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    x = torch.zeros(1, 3, *input_hw, device='meta')
    model = model.to('meta')
    if task_of(cfg) == 'det':
        flops = count_forward_flops(DetectorFeatures(model), x)
    else:
        flops = count_forward_flops(model, x, mode='tensor')
    return params, flops / 1e9
