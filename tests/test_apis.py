"""mmpatch.apis: the train / test functions the sweep calls in-process, and the hooks the configs
declare (no entry point adds hooks behind the config's back)."""
import ast
import glob
import json
import logging
import os.path as osp

import pytest
from mmengine.config import Config

from mmpatch.apis.config import load_config, parse_cfg_options
from mmpatch.apis.errors import CliError
from mmpatch.sweep.cells import make_cells, run_cell
from mmpatch.utils.errors import UserError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LEAVES = sorted(f for f in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                if '/_base_/' not in f)


def _base_chain(path):
    """``path`` and the local files of its ``_base_`` chain (``mmseg::``/``mmdet::`` ones left out)."""
    base = ast.literal_eval(next((n.value for n in ast.parse(open(path).read()).body
                                  if isinstance(n, ast.Assign) and n.targets[0].id == '_base_'),
                                 ast.Constant([])))
    bases = [base] if isinstance(base, str) else base
    return [path] + [f for b in bases if '::' not in b
                     for f in _base_chain(osp.normpath(osp.join(osp.dirname(path), b)))]


def test_every_leaf_declares_the_atomic_checkpoint_and_finite_loss_hooks():
    # statically for every leaf: a file of its chain declares both hooks
    assert len(LEAVES) > 100
    for path in LEAVES:
        texts = [open(f).read() for f in _base_chain(path)]
        assert any("type='AtomicCheckpointHook'" in t and "type='FiniteLossHook'" in t for t in texts), path
        assert not any("type='CheckpointHook'" in t for t in texts), path
    # merged by mmengine, for one leaf of each folder
    for folder in sorted({osp.dirname(p) for p in LEAVES}):
        path = next(p for p in LEAVES if osp.dirname(p) == folder)
        hooks = Config.fromfile(path, import_custom_modules=False).default_hooks
        assert hooks.checkpoint.type == 'AtomicCheckpointHook', path
        assert hooks.finite_loss.type == 'FiniteLossHook', path


def test_the_config_is_built_as_written(toy_seg_root, tmp_path):
    """The hooks the runner registers are the config's: a config with mmengine's plain
    CheckpointHook and no FiniteLossHook trains with exactly those."""
    from mmpatch.apis.runner import build_runner
    cfg = load_config(osp.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py'), [
        'default_hooks.checkpoint.type=CheckpointHook',
        f'train_dataloader.dataset.data_root={toy_seg_root}', 'experiment_name=as_written',
        'visualizer.name=as_written'])
    del cfg.default_hooks['finite_loss']  # mmengine takes None only for its own hook names
    cfg.work_dir = str(tmp_path)
    names = [type(h).__name__ for h in build_runner(cfg, 'mmseg', verbose=False).hooks]
    assert 'CheckpointHook' in names and 'AtomicCheckpointHook' not in names
    assert 'FiniteLossHook' not in names


def test_cfg_options_as_strings_and_a_config_object():
    assert parse_cfg_options(['a.b=1', 'c=[1,2]', 'd=x']) == {'a.b': 1, 'c': [1, 2], 'd': 'x'}
    with pytest.raises(CliError, match="'no_equals_sign' is not key=value"):
        parse_cfg_options(['no_equals_sign'])
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py'))
    loaded = load_config(cfg, ['train_cfg.max_iters=3'])  # a Config is copied, options checked
    assert loaded.train_cfg.max_iters == 3 and cfg.train_cfg.max_iters == 400
    with pytest.raises(UserError, match='train_cfg.max_iterz'):
        load_config(cfg, ['train_cfg.max_iterz=3'])


def _scalars(cell_dir):
    (path,) = glob.glob(osp.join(cell_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_two_cells_in_one_process_keep_their_own_state(toy_seg_root, tmp_path):
    """The sweep's in-process path: two cells, each ``apis.train`` then ``apis.test`` in this
    process. Each cell's validation curve, log and test metrics land in its own folder, and the
    global instances in use at the end are the second cell's."""
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.visualization import Visualizer
    configs = [osp.join(REPO, 'configs', 'toy', f'vit_t_p8_{h}.py') for h in ('linear', 'upernet')]
    cells = make_cells(configs, [0], str(tmp_path))
    options = [f'{s}_dataloader.dataset.data_root={toy_seg_root}' for s in ('train', 'val', 'test')]
    for cell in cells:
        run_cell(cell, cfg_options=options, iters_scale=0.005)  # 400 -> 2 iterations
    for cell in cells:
        assert cell.is_done()
        # validation every iteration (the schedule scaled): 2 validation rows, in this cell's folder
        assert sum('mIoU' in row for row in _scalars(cell.work_dir)) == 2, cell.key
        (log,) = glob.glob(osp.join(cell.work_dir, '2*', '2*.log'))
        text = open(log).read()
        assert f'{cell.name}_seed0_train' in text and 'training from the start' in text
        other = next(c for c in cells if c is not cell)
        assert other.work_dir not in text  # no line of the other cell
        (metrics,) = glob.glob(osp.join(cell.work_dir, 'test', '*', '*.json'))
        assert 'mIoU' in json.load(open(metrics))
    last = 'vit_t_p8_upernet_seed0_test'
    assert Visualizer.get_current_instance().instance_name == last
    assert MessageHub.get_current_instance().instance_name.startswith(last)
    logger = MMLogger.get_current_instance()
    assert logger.instance_name.startswith(last)
    # the sweep's runs keep the console to warnings and errors (their log files keep the rest)
    console = [h for h in logger.handlers if type(h) is logging.StreamHandler]
    assert console and all(h.level == logging.WARNING for h in console)


def test_a_cell_through_the_module_entry_points(toy_seg_root, tmp_path):
    """The command lines the sweep gives torchrun and launchers: ``python -m mmpatch.apis.train``
    and ``... .test`` on ``cell_runs``' arguments (here without a launcher)."""
    from mmpatch.engine.atomic_checkpoint import last_checkpoint
    from mmpatch.sweep.cells import _launch, cell_runs, command_line
    (cell,) = make_cells([osp.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py')], [0], str(tmp_path))
    options = [f'{s}_dataloader.dataset.data_root={toy_seg_root}' for s in ('train', 'val', 'test')]
    train_kwargs, test_kwargs = cell_runs(cell, options, iters_scale=0.005)
    log = str(tmp_path / 'sweep.log')
    _launch('train', command_line(train_kwargs), 1, 'none', log)
    checkpoint = last_checkpoint(cell.work_dir)
    assert checkpoint.endswith('iter_2.pth')
    _launch('test', command_line(test_kwargs, checkpoint), 1, 'none', log)
    text = open(log).read()
    assert 'test.py: metrics: ' in text and 'Traceback' not in text
    with pytest.raises(RuntimeError, match=r'test failed \(exit 2\); see .*sweep.log'):
        _launch('test', command_line(test_kwargs, str(tmp_path / 'none.pth')), 1, 'none', log)
    assert 'test.py: error: test.py CHECKPOINT: checkpoint not found' in open(log).read()


def test_later_runs_of_a_process_get_instances_of_their_own():
    """mmengine hands back an existing logger / visualizer for a known name: from the second run
    of a process on, build_runner names them after the run, unless the config does."""
    from mmengine.config import Config

    from mmpatch.apis.runner import name_instances
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py'))
    first = cfg.copy()
    name_instances(first, 0)  # the first run keeps mmengine's names (tools/train.py's processes)
    assert first.get('experiment_name') is None and first.visualizer.name == 'visualizer'
    later = cfg.copy()
    name_instances(later, 3)
    assert later.experiment_name.startswith('vit_t_p8_linear_') and later.experiment_name.endswith('_run3')
    assert later.visualizer.name == later.experiment_name
    named = cfg.copy()
    named.experiment_name, named.visualizer.name = 'mine', 'my_visualizer'
    name_instances(named, 3)
    assert (named.experiment_name, named.visualizer.name) == ('mine', 'my_visualizer')
