"""The logic of ``tools/train.py`` and ``tools/test.py`` (mmseg 1.x / mmdet 3.x style).

One CLI for both tasks: the config's ``default_scope`` ('mmseg' or 'mmdet')
picks the package whose runner registry, visualization hook semantics and
``--out`` format are used (mmseg: folder of PNG label maps; mmdet: .pkl).
Dataset folders/files of the dataloaders (and evaluator ann_files) are checked
before the Runner is built. Bad input ends with one line ``<tool>: error: ...``
on stderr and exit code 2, no traceback: every ``UserError``
(``mmpatch/utils/errors.py``: a config that does not load, unknown keys or bad
values in ``--cfg-options``, a patch size that does not fit the crop, missing
or unreadable data, checkpoint or config files, a work dir that holds another
run's checkpoints), a bad dataset file (``DataError``) and a checkpoint that does
not fit the model (its keys listed below the line). Failures while training
(CUDA out of memory, a non-finite loss) end the same way with exit code 1 and
the fix in the line. Any other exception is a bug and keeps its traceback;
``--debug`` (or ``MMPATCH_DEBUG=1``) prints the traceback of the one-line errors
too. Every training run saves checkpoints atomically (``AtomicCheckpointHook``)
and stops at the first NaN/inf loss (``FiniteLossHook``); see
docs/robustness.md.
"""
import argparse
import contextlib
import copy
import glob
import logging
import os
import os.path as osp
import sys
import traceback
import warnings
import zipfile

import torch
from mmengine.config import ConfigDict, DictAction
from mmengine.logging import print_log

from mmpatch.datasets.sample_checks import DataError, original_message
from mmpatch.engine.atomic_checkpoint import latest_complete_checkpoint
from mmpatch.engine.config_checks import (check_cfg_options, check_config_types, missing_config_message,
                                          read_config)
from mmpatch.engine.finite_loss_hook import NonFiniteLossError
from mmpatch.engine.schedule import scale_schedule, set_train_length
from mmpatch.models.backbones.plain_backbone import patch_size_error
from mmpatch.models.weights.checkpoint_filter import CheckpointMismatchError, state_dict_mismatch
from mmpatch.utils.errors import UserError

SCOPES = ('mmseg', 'mmdet')
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
DATASET_DOCS = {
    'mmseg': 'https://mmsegmentation.readthedocs.io/en/latest/user_guides/2_dataset_prepare.html',
    'mmdet': 'https://mmdetection.readthedocs.io/en/latest/user_guides/dataset_prepare.html',
}
TOY_KIND = {'mmseg': 'seg', 'mmdet': 'coco'}
CFG_OPTIONS_HELP = ('override settings of the config, key=value pairs (xxx=yyy), merged into it; '
                    'lists as key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]", no spaces')


# mmengine resolves `mmseg::`/`mmdet::` config paths through pkg_resources, whose deprecation
# warning (setuptools >= 81) would otherwise open every run and every one-line error.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)


class CliError(UserError):
    """A user error found by the CLI: reported as one line, without traceback."""


class TrainingFailure(Exception):
    """Training could not go on (e.g. out of memory): reported as one line, exit code 1."""


# ----------------------------------------------------------------------------- parsers
class CfgOptionsAction(DictAction):
    """mmengine's DictAction, with a usage error (not a traceback) for an item without '='."""

    def __call__(self, parser, namespace, values, option_string=None):
        bad = [v for v in values if '=' not in v or v.startswith('=')]
        if bad:
            raise argparse.ArgumentError(self, f'{bad[0]!r} is not key=value (e.g. train_cfg.max_iters=20)')
        super().__call__(parser, namespace, values, option_string)


def _add_common(parser):
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics '
                        '(default: config work_dir, else work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, help=CFG_OPTIONS_HELP)
    parser.add_argument('--verbose', action='store_true', help="print mmengine's environment and "
                        'config dump and its hook list on the console too (always in the log file)')
    parser.add_argument('--debug', action='store_true', help='print the traceback of a one-line error '
                        '(as MMPATCH_DEBUG=1 does)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def train_parser():
    parser = argparse.ArgumentParser(prog='train.py', description='Train a segmentor or detector '
                                     "(the config's default_scope: mmseg or mmdet)")
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='resume training: alone, from the latest checkpoint in the work dir '
                        '(a fresh start when there is none); with a path, from that checkpoint')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by total batch size / auto_scale_lr.base_batch_size')
    length = parser.add_mutually_exclusive_group()
    length.add_argument('--max-iters', type=int, metavar='N',
                        help='train N iterations (epochs for an epoch-based config): the '
                        'scheduler ends, validation and checkpoint intervals move with it')
    length.add_argument('--iters-scale', type=float, metavar='F',
                        help='multiply the schedule by F (2: twice as long), as --max-iters does')
    _add_common(parser)
    return parser


def test_parser():
    parser = argparse.ArgumentParser(prog='test.py', description='Test (and evaluate) a segmentor or '
                                     "detector (the config's default_scope: mmseg or mmdet)")
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='mmseg: folder for the predicted label maps, one PNG per image '
                        'named as the image; a pixel holds its class index + 1 for datasets with '
                        'reduce_zero_label (ADE20K, the toy set: the annotation files\' convention, 0 = '
                        'unlabelled), else the class index. mmdet: .pkl file for the raw predictions '
                        '(offline evaluation). A relative path is relative to the current folder, '
                        'as in mmseg/mmdet; the absolute path is printed at the end')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save painted predictions; a relative folder goes under '
                        '<work_dir>/ (mmseg: <show_dir>/vis_data/vis_image/) or <work_dir>/<timestamp>/ (mmdet)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each shown image stays')
    parser.add_argument('--tta', action='store_true', help="test-time augmentation (the config's "
                        'tta_model and tta_pipeline)')
    _add_common(parser)
    return parser


def parse(parser, argv):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


# ----------------------------------------------------------------------------- config
def load_config(path, cfg_options, launcher, type_overrides=None):
    """Config with CLI options merged; checks ``default_scope`` and, before merging, the options
    (``config_checks.check_cfg_options``; ``type_overrides``: types the CLI sets afterwards)."""
    if not osp.isfile(path):
        raise CliError(missing_config_message(path))
    cfg = read_config(path)
    scope = (cfg_options or {}).get('default_scope', cfg.get('default_scope'))
    if cfg_options and scope in SCOPES:
        check_cfg_options(cfg, cfg_options, scope, type_overrides)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope in SCOPES:
        check_config_types(cfg, scope, path)
    if scope is None:
        raise CliError(f"{path} sets no default_scope: add default_scope = 'mmseg' (segmentation) or "
                       "'mmdet' (detection), e.g. by inheriting mmseg::_base_/default_runtime.py")
    if scope not in SCOPES:
        raise CliError(f"{path}: default_scope {scope!r} is not supported; use one of {SCOPES}")
    cfg.launcher = launcher
    return cfg


def set_work_dir(cfg, work_dir, config_path):
    """CLI > config's work_dir > work_dirs/<config name>."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])


def _is_remote(path):
    return '://' in str(path)


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
                if not _is_remote(path) and not osp.exists(path):
                    raise CliError(_missing_data_message(path, f'{loader}.dataset.{key}', cfg, scope))
    for name in evaluators:
        evaluator = cfg.get(name)
        for i, ev in enumerate(evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]):
            path = ev.get('ann_file') if isinstance(ev, dict) else None
            if path and not _is_remote(path) and not ev.get('backend_args') and not osp.exists(path):
                raise CliError(_missing_data_message(path, f'{name}.ann_file', cfg, scope))


# ----------------------------------------------------------------------------- train options
def set_schedule_length(cfg, max_iters=None, iters_scale=None):
    """``--max-iters`` / ``--iters-scale``: the whole schedule moves (mmpatch/engine/schedule.py);
    each change is printed, and mmengine saves the resulting config in the work dir."""
    if max_iters is None and iters_scale is None:
        return
    try:
        changes = (set_train_length(cfg, max_iters) if max_iters is not None
                   else scale_schedule(cfg, iters_scale))
    except ValueError as e:
        flag = '--max-iters' if max_iters is not None else '--iters-scale'
        raise CliError(f'{flag}: {e}') from None
    for line in changes:
        print_log(f'schedule: {line}', logger='current')


def enable_amp(cfg):
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in the config.', logger='current',
                  level=logging.WARNING)
        return
    if wrapper != 'OptimWrapper':
        raise CliError(f'--amp needs optim_wrapper.type OptimWrapper, the config has {wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg):
    auto = cfg.get('auto_scale_lr')
    if not auto or 'base_batch_size' not in auto:
        raise CliError('--auto-scale-lr needs auto_scale_lr = dict(enable=False, base_batch_size=N) '
                       'in the config')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg, resume):
    """Resume from ``resume``, or ('auto') from the newest complete checkpoint in the work dir.

    mmengine's own 'auto' trusts ``last_checkpoint`` blindly; here a file it
    names that is missing or truncated is skipped for the newest complete one.
    """
    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        latest = latest_complete_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if latest is None:  # a fresh start (from the config's load_from, if it has one)
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; training from the start',
                      logger='current', level=logging.WARNING)
            cfg.resume = False
        else:
            cfg.load_from = latest
    else:
        if not _is_remote(resume) and not osp.isfile(resume):
            raise CliError(f'--resume: checkpoint not found: {resume}')
        cfg.load_from = resume


def check_no_overwrite(work_dir, resume):
    """Training without --resume into a work dir that holds checkpoints would overwrite them
    (iter_N.pth of the same N) and repoint last_checkpoint, mixing two runs: refuse."""
    if resume is not None or _is_remote(work_dir) or not osp.isdir(work_dir):
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
    if _is_remote(path):
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


def use_atomic_checkpoints(cfg):
    """Swap a plain CheckpointHook for AtomicCheckpointHook (same arguments)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(hook, dict) and hook.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'


def add_finite_loss_hook(cfg):
    """Append FiniteLossHook to custom_hooks unless the config has it."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') == 'FiniteLossHook' for h in hooks):
        hooks.append(dict(type='FiniteLossHook'))
    cfg.custom_hooks = hooks


def _oom_site(err):
    """The model part (class) that ran out of memory: the first module below the top model."""
    modules = []
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get('self')
        if isinstance(owner, torch.nn.Module) and type(owner).__name__ not in modules:
            modules.append(type(owner).__name__)
        tb = tb.tb_next
    return modules[1] if len(modules) > 1 else (modules[0] if modules else None)


def out_of_memory_message(cfg, err):
    """One line: where memory ran out and the config changes that need less of it."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or (model.get('module') or {}).get('backbone') or {}
    fixes = []
    if backbone.get('with_cp') is False:
        fixes.append('activation checkpointing (--cfg-options model.backbone.with_cp=True)')
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    if batch and batch > 1:
        fixes.append(f'a smaller batch (train_dataloader.batch_size={batch // 2}, now {batch}; more GPUs '
                     'keep the total)')
    if (cfg.get('optim_wrapper') or {}).get('type') != 'AmpOptimWrapper':
        fixes.append('bf16 autocast (--amp --cfg-options optim_wrapper.dtype=bfloat16)')
    if not fixes:
        fixes.append('more GPUs with a smaller per-GPU batch, or FSDP (docs/robustness.md)')
    site = _oom_site(err)
    detail = str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'
    return (f'CUDA out of memory while training{f" in {site}" if site else ""} ({detail[:200]}); '
            f'fix: {"; or ".join(fixes)}')


def _model_of(runner):
    """The bare model of a runner (through DDP/FSDP wrappers and TTA), or None before it is built."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model if isinstance(model, torch.nn.Module) else None


def check_checkpoint_fits(runner, path, state_dict=None):
    """Raise CheckpointMismatchError listing the keys if ``path`` was saved from another model.

    mmengine loads checkpoints for testing and resuming non-strictly (a wrong
    width or architecture only logs a warning and leaves weights random).
    ``state_dict``: the file's, as ``read_checkpoint`` returned it (read here when None).
    """
    model = _model_of(runner)
    if model is None or not path or _is_remote(path) or not osp.isfile(path):
        return
    if state_dict is None:
        state_dict = read_checkpoint(path, 'checkpoint')
    message = state_dict_mismatch(model, state_dict, source=path)
    if message:
        raise CheckpointMismatchError(message)


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


# ----------------------------------------------------------------------------- test options
def enable_visualization(cfg, scope, show, show_dir, wait_time):
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        hook = 'SegVisualizationHook' if scope == 'mmseg' else 'DetVisualizationHook'
        raise CliError(f"--show/--show-dir need default_hooks.visualization in the config, "
                       f"e.g. visualization=dict(type='{hook}')")
    hook = hooks['visualization']
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if scope == 'mmseg':
        hook.setdefault('interval', 1)  # SegVisualizationHook's default draws every 50th image only
        # it also reads runner.iter, which builds the train loop: build that on the test data,
        # so testing needs no training set
        if cfg.get('train_cfg') and cfg.get('test_dataloader'):
            cfg.train_dataloader = copy.deepcopy(cfg.test_dataloader)
        if show_dir:  # it writes through the visualizer's backends: <save_dir>/vis_data/vis_image/
            cfg.visualizer['save_dir'] = show_dir if osp.isabs(show_dir) else osp.join(cfg.work_dir, show_dir)
    elif show_dir:  # DetVisualizationHook puts a relative folder under <work_dir>/<timestamp>/
        hook['test_out_dir'] = show_dir


def enable_tta(cfg, scope):
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        example = "dict(type='SegTTAModel')" if scope == 'mmseg' else \
            "dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))"
        raise CliError(f'--tta needs {" and ".join(missing)} in the config (tta_model = {example}; '
                       "tta_pipeline: see the dataset base's tta_pipeline)")
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def set_seg_out(cfg, out):
    cfg.test_evaluator['output_dir'] = out
    cfg.test_evaluator['keep_results'] = True


def print_test_outputs(runner, scope, out, show_dir):
    """Where the test wrote its metrics, ``--out`` and ``--show-dir`` files (absolute paths)."""
    from mmengine.dist import is_main_process
    if not is_main_process():
        return
    lines = []
    metrics = osp.join(runner.log_dir, f'{runner.timestamp}.json')
    if osp.isfile(metrics):
        lines.append(f'metrics: {osp.abspath(metrics)}')
    if out is not None:
        what = ('label maps (PNG; class index + 1 with reduce_zero_label)' if scope == 'mmseg'
                else 'raw predictions (pickle)')
        lines.append(f'--out {what}: {osp.abspath(out)}')
    if show_dir:
        if scope == 'mmseg':
            folder = osp.join(runner.visualizer._vis_backends['LocalVisBackend']._save_dir, 'vis_image') \
                if 'LocalVisBackend' in getattr(runner.visualizer, '_vis_backends', {}) else None
        else:
            folder = next((h.test_out_dir for h in runner.hooks if hasattr(h, 'test_out_dir')), None)
        if folder:
            lines.append(f'--show-dir painted predictions: {osp.abspath(folder)}')
    for line in lines:
        print(f'test.py: {line}', flush=True)


def add_det_dump(runner, out):
    from mmdet.evaluation import DumpDetResults
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))


# ----------------------------------------------------------------------------- runner
class QuietConsole(logging.Filter):
    """Keeps mmengine's dumps off the console (the log file in the work dir keeps them): the
    environment, the config (also saved as <work_dir>/<config>.py), the hook list, and three
    warnings about mmengine/mmseg internals a user cannot act on. ``--verbose`` shows them."""
    PREFIXES = ('\n' + '-' * 60 + '\nSystem environment:', 'Config:\n',
                'Hooks will be executed in the following order',
                'Distributed training is not used',  # a CPU / single-GPU run: nothing to act on
                'The prefix is not set in metric class',  # mmseg's IoUMetric: names its keys itself
                '"FileClient" will be deprecated',  # mmseg's own hooks and datasets still use it
                '"HardDiskBackend" is the alias of "LocalBackend"')

    def filter(self, record):
        return not str(record.msg).startswith(self.PREFIXES)


def _runner_class(cfg, scope, verbose):
    """The runner class (the config's runner_type, from the scope's RUNNERS), made quiet on the
    console unless ``verbose``: its logger gets ``QuietConsole`` on the console handler."""
    from mmengine.runner import Runner
    cls = Runner
    if 'runner_type' in cfg:
        registry = __import__(f'{scope}.registry', fromlist=['RUNNERS']).RUNNERS
        with registry.switch_scope_and_registry(cfg.get('_scope_')) as registry:
            cls = registry.get(cfg.runner_type) if isinstance(cfg.runner_type, str) else cfg.runner_type
        if cls is None:
            raise CliError(f'runner_type {cfg.runner_type!r} is not in the {scope} RUNNERS registry')
    if verbose:
        return cls

    def build_logger(self, *args, **kwargs):
        logger = cls.build_logger(self, *args, **kwargs)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and not any(isinstance(f, QuietConsole) for f in handler.filters):
                handler.addFilter(QuietConsole())
        return logger

    return type(cls.__name__, (cls,), dict(build_logger=build_logger, __module__=cls.__module__))


def build_runner(cfg, scope, verbose=True):
    """Runner from the scope's RUNNERS registry when the config names a runner_type; quiet on the
    console (``QuietConsole``) unless ``verbose``."""
    return _runner_class(cfg, scope, verbose).from_cfg(cfg)


# mmseg UserWarnings that are noise in every tools/train.py and tools/test.py run: none asks the
# user for a change (stdlib warnings, so filtered for the run only, by the CLI, not on import).
NOISE_WARNINGS = (
    r'``build_loss`` would be deprecated',  # mmseg's own decode heads call build_loss
    r'Default ``avg_non_ignore`` is False',  # mmseg's default, kept on purpose by the recipes
    r'`reduce_zero_label` will be deprecated',  # raised by LoadAnnotations(reduce_zero_label=...),
    #                                             as mmseg's own ADE20K configs set it
    r'The draw is False',  # the visualization hook when nothing is to be drawn: training, and
    #                        testing without --show/--show-dir (with them, draw is True: no warning)
)


@contextlib.contextmanager
def quiet_warnings(verbose):
    with warnings.catch_warnings():
        if not verbose:
            for message in NOISE_WARNINGS:
                warnings.filterwarnings('ignore', message=message, category=UserWarning)
        yield


def train_main(argv=None):
    args = parse(train_parser(), argv)
    with quiet_warnings(args.verbose):
        _train(args)


def _train(args):
    cfg = load_config(args.config, args.cfg_options, args.launcher,
                      type_overrides={'optim_wrapper': 'AmpOptimWrapper'} if args.amp else None)
    scope = cfg.default_scope
    set_work_dir(cfg, args.work_dir, args.config)
    check_no_overwrite(cfg.work_dir, args.resume)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_schedule_length(cfg, args.max_iters, args.iters_scale)
    set_resume(cfg, args.resume)
    resume_state = read_checkpoint(cfg.load_from, '--resume', resume=True) if cfg.get('resume') else None
    use_atomic_checkpoints(cfg)
    add_finite_loss_hook(cfg)
    check_patch_sizes(cfg, scope)
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    check_data_paths(cfg, loaders, ['val_evaluator'] if cfg.get('val_cfg') else [], scope)
    runner = build_runner(cfg, scope, args.verbose)
    check_num_classes(runner, 'train_loop')
    if cfg.get('resume'):
        check_checkpoint_fits(runner, cfg.load_from, resume_state)
    try:
        runner.train()
    except torch.cuda.OutOfMemoryError as err:
        raise TrainingFailure(out_of_memory_message(cfg, err)) from err


def test_main(argv=None):
    args = parse(test_parser(), argv)
    with quiet_warnings(args.verbose):
        _test(args)


def _test(args):
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    scope = cfg.default_scope
    set_work_dir(cfg, args.work_dir, args.config)
    state_dict = read_checkpoint(args.checkpoint, 'test.py CHECKPOINT')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, scope, args.show, args.show_dir, args.wait_time)
    if args.tta:
        enable_tta(cfg, scope)
    if args.out is not None:
        if scope == 'mmseg':
            set_seg_out(cfg, args.out)
        elif not args.out.endswith(('.pkl', '.pickle')):
            raise CliError(f'--out for detection must be a .pkl file, got {args.out}')
    check_patch_sizes(cfg, scope)
    check_data_paths(cfg, ['test_dataloader'], ['test_evaluator'], scope)
    runner = build_runner(cfg, scope, args.verbose)
    check_num_classes(runner, 'test_loop')
    check_checkpoint_fits(runner, args.checkpoint, state_dict)
    del state_dict  # the runner loads the file itself
    if args.out is not None and scope == 'mmdet':
        add_det_dump(runner, args.out)
    runner.test()
    print_test_outputs(runner, scope, args.out, args.show_dir)


def known_failure(err):
    """``(message, exit code)`` of a failure reported as one line, None for any other error.

    Exit code 2: bad input (``UserError``: CLI, config, options, data files,
    checkpoint, work dir); 1: training failed (out of memory, non-finite loss).
    """
    if isinstance(err, DataError):  # may come from a DataLoader worker, wrapped
        return original_message(err), 2
    if isinstance(err, (UserError, CheckpointMismatchError)):
        return str(err), 2
    if isinstance(err, (TrainingFailure, NonFiniteLossError)):
        return str(err), 1
    return None


def debug_requested(argv=None):
    """``--debug`` among the arguments (``sys.argv`` by default), or ``MMPATCH_DEBUG`` set (not 0)."""
    argv = sys.argv[1:] if argv is None else argv
    return '--debug' in argv or os.environ.get('MMPATCH_DEBUG', '0') not in ('', '0')


def run(main, prog, argv=None):
    """Run ``main``; a known failure becomes ``prog: error: message`` on stderr (exit code from
    ``known_failure``), without a traceback unless ``debug_requested(argv)`` (``argv``: the
    tool's arguments, ``sys.argv[1:]`` by default); other errors (bugs) propagate with theirs."""
    try:
        main()
    except Exception as e:
        failure = known_failure(e)
        if failure is None:
            raise
        _fail(prog, *failure, argv=argv)


class ToolExit(SystemExit):
    """``SystemExit`` with the exit code (``.code``) whose text is the error line (so code that
    catches it, e.g. ``pytest.raises(SystemExit, match=...)``, sees the message)."""

    def __init__(self, code, line):
        super().__init__(code)
        self.line = line

    def __str__(self):
        return self.line


def _fail(prog, message, code, argv=None):
    """The one exit path of a user error: ``prog: error: message`` on stderr, exit ``code``; when
    called while an exception is handled, its traceback first if ``debug_requested(argv)``."""
    if sys.exc_info()[0] is not None and debug_requested(argv):
        traceback.print_exc()
    line = f'{prog}: error: {message}'
    print(line, file=sys.stderr, flush=True)
    raise ToolExit(code, line)


def main(argv=None):
    """``python -m mmpatch.engine.cli {train,test} ARGS``: the entry points as ``tools/train.py``
    and ``tools/test.py`` run them (the sweep's cells under torchrun or a launcher)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ('train', 'test'):
        _fail('python -m mmpatch.engine.cli', 'the first argument is train or test', 2)
    entry = train_main if argv[0] == 'train' else test_main
    run(lambda: entry(argv[1:]), f'{argv[0]}.py', argv[1:])


if __name__ == '__main__':
    main()
