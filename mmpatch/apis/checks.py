"""Checks before the Runner is built: the data paths, the model's patch sizes and classes, and
the checkpoints (readable, fitting the model, not overwritten by a second run).

Each raises ``CliError`` (or ``CheckpointMismatchError``) whose message names the file or key
and the fix; the tools print it as one line (``mmpatch/apis/errors.py``).
"""
import glob
import os.path as osp
import zipfile

import torch

from mmpatch.models.backbones.plain_backbone import patch_size_error
from mmpatch.models.weights.checkpoint_filter import CheckpointMismatchError, state_dict_mismatch
from mmpatch.utils.paths import is_remote

from .errors import CliError

# ----------------------------------------------------------------------------- data
DATASET_DOCS = {
    'mmseg': 'https://mmsegmentation.readthedocs.io/en/latest/user_guides/2_dataset_prepare.html',
    'mmdet': 'https://mmdetection.readthedocs.io/en/latest/user_guides/dataset_prepare.html',
}


TOY_KIND = {'mmseg': 'seg', 'mmdet': 'coco'}


def _dataset_cfgs(cfg):
    """Leaf dataset configs of a dataset config (through wrappers and concatenations)."""
    if isinstance(cfg, (list, tuple)):
        return [d for c in cfg for d in _dataset_cfgs(c)]
    if not isinstance(cfg, dict):
        return []
    if 'datasets' in cfg:
        return _dataset_cfgs(cfg['datasets'])
    if 'dataset' in cfg:
        return _dataset_cfgs(cfg['dataset'])
    return [cfg]


def _dataset_paths(ds):
    """(key, path) the dataset will read, joined with data_root the way mmengine does."""
    root = ds.get('data_root')
    out = [('data_root', root)] if root else []

    def join(p):
        return osp.join(root, p) if root and not osp.isabs(p) else p

    if ds.get('ann_file'):
        out.append(('ann_file', join(ds['ann_file'])))
    for key, prefix in (ds.get('data_prefix') or {}).items():
        if prefix:
            out.append((f'data_prefix.{key}', join(prefix)))
    return out


def _missing_data_message(path, where, cfg, scope):
    fix = (f'generate it with "python tools/data/make_toy.py {TOY_KIND[scope]} --out {_toy_root(cfg, path)}"'
           if 'toy' in str(path).lower() else f'prepare the dataset as in {DATASET_DOCS[scope]}')
    return (f'dataset path not found: {path} ({where}); {fix}, or point data_root elsewhere with '
            '--cfg-options {train,val,test}_dataloader.dataset.data_root=PATH')


def _toy_root(cfg, path):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for ds in _dataset_cfgs((cfg.get(loader) or {}).get('dataset')):
            root = ds.get('data_root')
            if root and str(path).startswith(str(root)):
                return str(root).rstrip('/')
    return osp.dirname(str(path))


def check_data_paths(cfg, loaders, evaluators, scope):
    """Raise CliError naming the first dataset folder/file that does not exist."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in _dataset_cfgs(loader_cfg.get('dataset')):
            if ds.get('backend_args'):
                continue  # remote storage: nothing to check locally
            for key, path in _dataset_paths(ds):
                if not is_remote(path) and not osp.exists(path):
                    raise CliError(_missing_data_message(path, f'{loader}.dataset.{key}', cfg, scope))
    for name in evaluators:
        evaluator = cfg.get(name)
        for i, ev in enumerate(evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]):
            path = ev.get('ann_file') if isinstance(ev, dict) else None
            if path and not is_remote(path) and not ev.get('backend_args') and not osp.exists(path):
                raise CliError(_missing_data_message(path, f'{name}.ann_file', cfg, scope))


# ----------------------------------------------------------------------------- model
def check_patch_sizes(cfg, scope):
    """Segmentation: the backbone's patch size divides the training crop (the backbone's
    ``img_size`` and the data preprocessor's ``size``; the shared rule,
    ``plain_backbone.patch_size_error``, whose range part the backbones check when built).
    Detection pads its images and takes any p in 1..32 (docs/detection.md). Both: a neck's
    input stride is the patch size."""
    model = cfg.get('model') or {}
    if 'backbone' not in model and isinstance(model.get('module'), dict):
        model = model['module']  # test-time augmentation wraps the model
    backbone = model.get('backbone') or {}
    p = backbone.get('patch_size') if isinstance(backbone, dict) else None
    if p is None:
        return
    crops = [('model.backbone.img_size', backbone.get('img_size')),
             ('model.data_preprocessor.size', (model.get('data_preprocessor') or {}).get('size'))]
    for key, crop in crops if scope == 'mmseg' else ():
        message = patch_size_error(p, crop, crop_key=key) if crop is not None else None
        if message:
            raise CliError(message)
    neck = model.get('neck')
    if isinstance(neck, dict) and neck.get('in_stride') not in (None, p):
        raise CliError(f"model.neck.in_stride={neck['in_stride']} differs from model.backbone.patch_size={p} "
                       '(the neck takes the stride-p map of the backbone); fix: --cfg-options '
                       f'model.neck.in_stride={p} (leaf configs set both from one patch_size)')


def _class_heads(model):
    """(config key, head) of the model's heads that predict the dataset's classes."""
    heads = []
    for key in ('decode_head', 'auxiliary_head', 'bbox_head'):
        heads.append((f'model.{key}', getattr(model, key, None)))
    roi = getattr(model, 'roi_head', None)
    for key in ('bbox_head', 'mask_head'):
        heads.append((f'model.roi_head.{key}', getattr(roi, key, None)))
    out = []
    for key, head in heads:
        if isinstance(head, torch.nn.ModuleList):
            out += [(f'{key}.{i}', h) for i, h in enumerate(head)]
        elif head is not None:
            out.append((key, head))
    return [(k, h) for k, h in out if isinstance(getattr(h, 'num_classes', None), int)]


def _model_of(runner):
    """The bare model of a runner (through DDP/FSDP wrappers and TTA), or None before it is built."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model if isinstance(model, torch.nn.Module) else None


def check_num_classes(runner, loop_name):
    """A head with fewer classes than the dataset (the loss would index past its outputs, or
    classes would never be predicted): ``CliError`` naming both numbers and the key to set.
    Builds the runner's ``loop_name`` loop (and so its dataset) early; the runner reuses it."""
    model = _model_of(runner)
    if model is None or not hasattr(runner, loop_name):
        return
    loop = getattr(runner, loop_name)  # builds the loop, its dataloader and dataset
    dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    if not classes:
        return
    small = [(k, h.num_classes) for k, h in _class_heads(model) if h.num_classes < len(classes)]
    if small:
        keys = ', '.join(f'{k}.num_classes={n}' for k, n in small)
        loader = loop_name.replace('_loop', '_dataloader')
        raise CliError(f'{keys} but the dataset ({type(dataset).__name__}, {loader}) has {len(classes)} '
                       f'classes; fix: --cfg-options '
                       + ' '.join(f'{k}.num_classes={len(classes)}' for k, _ in small))


# ----------------------------------------------------------------------------- checkpoints
def check_no_overwrite(work_dir, resume):
    """Training without --resume into a work dir that holds checkpoints would overwrite them
    (iter_N.pth of the same N) and repoint last_checkpoint, mixing two runs: refuse."""
    if resume is not None or is_remote(work_dir) or not osp.isdir(work_dir):
        return
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
    names = [osp.basename(f) for f in found]
    shown = names[-3:] if len(names) <= 3 else ['...', *names[-3:]]
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        shown.append('last_checkpoint')
    if shown:
        raise CliError(f'work dir {work_dir} already holds checkpoints ({", ".join(shown)}): training '
                       'again would overwrite them and mix two runs; fix: --resume to continue that run, '
                       'or --work-dir NEW_FOLDER for a new one')


def _checkpoint_problem(path, err):
    """Why ``torch.load`` could not read ``path``, in words."""
    with open(path, 'rb') as f:
        head = f.read(64)
    if not head:
        return 'the file is empty (0 bytes)'
    if head.startswith(b'PK') and not zipfile.is_zipfile(path):
        return 'the file is truncated (a torch zip file without its end: the save was cut short)'
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f'it is a text file, not a torch checkpoint (it starts {head.decode().strip()[:30]!r})'
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return f'torch.load cannot read it ({type(err).__name__}: {detail})'


def read_checkpoint(path, flag, resume=False):
    """The state dict of the checkpoint file ``path`` (for ``flag``: 'test.py CHECKPOINT',
    '--resume'); ``CliError`` naming the file when it is missing, unreadable, truncated, not a
    checkpoint, or (``resume``) has no training state. None for a remote path."""
    if is_remote(path):
        return None
    if not osp.isfile(path):
        raise CliError(f'{flag}: checkpoint not found: {path}')
    fix = ('fix: give a complete checkpoint saved by tools/train.py (iter_N.pth; --resume alone picks '
           'the newest complete one in the work dir)')
    try:  # mmap: the runner loads it again; this read stays cheap (zip-format files)
        ckpt = torch.load(path, map_location='cpu', mmap=zipfile.is_zipfile(path))
    except Exception as err:
        try:
            problem = _checkpoint_problem(path, err)
        except OSError as os_err:
            problem = f'cannot open it ({os_err.strerror})'
        raise CliError(f'{flag}: cannot read checkpoint {path}: {problem}; {fix}') from err
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict) or not any(isinstance(v, torch.Tensor) for v in state_dict.values()):
        what = (f'a dict without tensors (keys: {", ".join(map(str, list(ckpt)[:6]))})'
                if isinstance(ckpt, dict) else f'a {type(ckpt).__name__}')
        raise CliError(f'{flag}: {path} is not a checkpoint: it holds {what}, not a state dict '
                       f"(a dict of tensors, or a dict with 'state_dict'); {fix}")
    if resume and not isinstance(ckpt.get('meta'), dict):
        raise CliError(f'--resume: {path} holds weights only (no meta: iteration, optimizer and '
                       'scheduler state), so training cannot continue from it; fix: --resume with a '
                       f'checkpoint saved by tools/train.py, or start from these weights with '
                       f'--cfg-options load_from={path}')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


def check_checkpoint_fits(runner, path, state_dict=None):
    """Raise CheckpointMismatchError listing the keys if ``path`` was saved from another model.

    mmengine loads checkpoints for testing and resuming non-strictly (a wrong
    width or architecture only logs a warning and leaves weights random).
    ``state_dict``: the file's, as ``read_checkpoint`` returned it (read here when None).
    """
    model = _model_of(runner)
    if model is None or not path or is_remote(path) or not osp.isfile(path):
        return
    if state_dict is None:
        state_dict = read_checkpoint(path, 'checkpoint')
    message = state_dict_mismatch(model, state_dict, source=path)
    if message:
        raise CheckpointMismatchError(message)

