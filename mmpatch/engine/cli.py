"""The logic of ``tools/train.py`` and ``tools/test.py`` (mmseg 1.x / mmdet 3.x style).

One CLI for both tasks: the config's ``default_scope`` ('mmseg' or 'mmdet')
picks the package whose runner registry, visualization hook semantics and
``--out`` format are used (mmseg: folder of PNG label maps; mmdet: .pkl).
Dataset folders/files of the dataloaders (and evaluator ann_files) are checked
before the Runner is built. Bad input (no or unknown scope, missing config,
dataset path or checkpoint, options the config cannot take) ends with one line
``<tool>: error: ...`` on stderr and exit code 2, no traceback; so do a bad dataset
file (``DataError``) and a checkpoint that does not fit the model (its keys
listed below the line). Failures while training (CUDA out of memory, a
non-finite loss) end the same way with exit code 1 and the fix in the line.
Every training run saves checkpoints atomically (``AtomicCheckpointHook``)
and stops at the first NaN/inf loss (``FiniteLossHook``); see
docs/robustness.md.
"""
import argparse
import copy
import logging
import os
import os.path as osp
import sys
import warnings
import zipfile

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

from mmpatch.datasets.sample_checks import DataError, original_message
from mmpatch.engine.atomic_checkpoint import latest_complete_checkpoint
from mmpatch.engine.finite_loss_hook import NonFiniteLossError
from mmpatch.engine.schedule import scale_schedule, set_train_length
from mmpatch.models.utils.checkpoint_filter import CheckpointMismatchError, state_dict_mismatch

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


class CliError(Exception):
    """A user error: reported as one line, without traceback."""


class TrainingFailure(Exception):
    """Training could not go on (e.g. out of memory): reported as one line, exit code 1."""


# ----------------------------------------------------------------------------- parsers
def _add_common(parser):
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics '
                        '(default: config work_dir, else work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=CFG_OPTIONS_HELP)
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
    parser.add_argument('--out', help='mmseg: folder for the predicted label maps (PNG); '
                        'mmdet: .pkl file for the raw predictions (offline evaluation)')
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
def load_config(path, cfg_options, launcher):
    """Config with CLI options merged; checks ``default_scope``."""
    if not osp.isfile(path):
        raise CliError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
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
            raise CliError(f'--resume checkpoint not found: {resume}')
        cfg.load_from = resume


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


def check_checkpoint_fits(runner, path):
    """Raise CheckpointMismatchError listing the keys if ``path`` was saved from another model.

    mmengine loads checkpoints for testing and resuming non-strictly (a wrong
    width or architecture only logs a warning and leaves weights random).
    """
    model = _model_of(runner)
    if model is None or not path or _is_remote(path) or not osp.isfile(path):
        return
    # the runner loads it again right after; mmap keeps this read cheap (zip-format files)
    ckpt = torch.load(path, map_location='cpu', mmap=zipfile.is_zipfile(path))
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}
    message = state_dict_mismatch(model, state_dict, source=path)
    if message:
        raise CheckpointMismatchError(message)


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


def add_det_dump(runner, out):
    from mmdet.evaluation import DumpDetResults
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))


# ----------------------------------------------------------------------------- runner
def build_runner(cfg, scope):
    """Runner from the scope's RUNNERS registry when the config names a runner_type."""
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    if scope == 'mmseg':
        from mmseg.registry import RUNNERS
    else:
        from mmdet.registry import RUNNERS
    return RUNNERS.build(cfg)


def train_main(argv=None):
    args = parse(train_parser(), argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    scope = cfg.default_scope
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    set_schedule_length(cfg, args.max_iters, args.iters_scale)
    set_resume(cfg, args.resume)
    use_atomic_checkpoints(cfg)
    add_finite_loss_hook(cfg)
    loaders = ['train_dataloader'] + (['val_dataloader'] if cfg.get('val_cfg') else [])
    check_data_paths(cfg, loaders, ['val_evaluator'] if cfg.get('val_cfg') else [], scope)
    runner = build_runner(cfg, scope)
    if cfg.get('resume'):
        check_checkpoint_fits(runner, cfg.load_from)
    try:
        runner.train()
    except torch.cuda.OutOfMemoryError as err:
        raise TrainingFailure(out_of_memory_message(cfg, err)) from err


def test_main(argv=None):
    args = parse(test_parser(), argv)
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    scope = cfg.default_scope
    set_work_dir(cfg, args.work_dir, args.config)
    if not _is_remote(args.checkpoint) and not osp.isfile(args.checkpoint):
        raise CliError(f'checkpoint not found: {args.checkpoint}')
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
    check_data_paths(cfg, ['test_dataloader'], ['test_evaluator'], scope)
    runner = build_runner(cfg, scope)
    check_checkpoint_fits(runner, args.checkpoint)
    if args.out is not None and scope == 'mmdet':
        add_det_dump(runner, args.out)
    runner.test()


def known_failure(err):
    """``(message, exit code)`` of a failure reported as one line, None for any other error.

    Exit code 2: bad input (CLI, config, data files, checkpoint); 1: training
    failed (out of memory, non-finite loss).
    """
    if isinstance(err, (CliError, CheckpointMismatchError)):
        return str(err), 2
    if isinstance(err, DataError):
        return original_message(err), 2
    if isinstance(err, (TrainingFailure, NonFiniteLossError)):
        return str(err), 1
    return None


def run(main, prog):
    """Run ``main``; a known failure becomes ``prog: error: message`` on stderr (exit code from
    ``known_failure``), no traceback; other errors propagate."""
    try:
        main()
    except Exception as e:
        failure = known_failure(e)
        if failure is None:
            raise
        _fail(prog, *failure)


def _fail(prog, message, code):
    print(f'{prog}: error: {message}', file=sys.stderr)
    sys.exit(code)
