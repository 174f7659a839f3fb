"""tools/train.py and tools/test.py end to end on the toy set, and their one-line errors."""
import glob
import json
import os
import os.path as osp
import runpy
import subprocess
import sys

import pytest

from mmpatch.apis import checks
from mmpatch.apis import errors
from mmpatch.apis import test as apis_test
from mmpatch.apis import train as apis_train

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMOKE = osp.join(REPO, 'configs', 'toy', 'smoke_fcn_toy.py')


def _tool(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def _data_root_options(root, loaders=('train', 'val', 'test')):
    return [f'{name}_dataloader.dataset.data_root={root}' for name in loaders]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Toy data from tools/data/make_toy.py, then 2 iterations of the smoke config."""
    tmp = tmp_path_factory.mktemp('cli')
    data = str(tmp / 'toy_seg')
    make_toy = runpy.run_path(osp.join(REPO, 'tools', 'data', 'make_toy.py'))['main']  # in-process: fast
    make_toy(['seg', '--out', data, '--num-train', '8', '--num-val', '2'])
    work_dir = str(tmp / 'work')
    run = _tool('tools/train.py', SMOKE, '--work-dir', work_dir, '--cfg-options',
                *_data_root_options(data, ('train', 'val')), 'train_cfg.max_iters=2',
                'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
                'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2')
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return data, work_dir, run.stdout + run.stderr


def test_train_output_is_quiet_by_default(trained):
    """The console shows the loss lines, not mmengine's dumps or mmseg's noise warnings (the log
    file in the work dir keeps the dumps)."""
    _, work_dir, output = trained
    assert 'Iter(train) [2/2]' in output and 'loss: ' in output
    for noise in ('System environment', 'Config:', 'Hooks will be executed', 'UserWarning'):
        assert noise not in output, noise
    (log,) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        text = f.read()
    assert 'System environment' in text and 'Config:' in text


def test_train_then_test_reports_miou(trained):
    data, work_dir, _ = trained
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    assert ckpt.endswith('iter_2.pth') and osp.isfile(ckpt)
    test_dir = osp.join(work_dir, 'test')
    preds = osp.join(work_dir, 'preds')
    run = _tool('tools/test.py', SMOKE, ckpt, '--work-dir', test_dir, '--out', preds, '--show-dir', 'vis',
                '--cfg-options', *_data_root_options(data, ('test',)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'mIoU' in run.stdout + run.stderr
    assert sorted(os.listdir(preds)) == ['toy_00000.png', 'toy_00001.png']  # --out: label maps
    assert len(glob.glob(osp.join(test_dir, 'vis', 'vis_data', 'vis_image', '*.png'))) == 2
    # the metrics file tools/sweep.py reads: <work_dir>/<stamp>/<stamp>.json
    (metrics_file,) = glob.glob(osp.join(test_dir, '*', '*.json'))
    printed = [line for line in run.stdout.splitlines() if line.startswith('test.py: ')]
    assert printed == [f'test.py: metrics: {metrics_file}',
                       f'test.py: --out label maps (PNG; class index + 1 with reduce_zero_label): {preds}',
                       f"test.py: --show-dir painted predictions: {osp.join(test_dir, 'vis', 'vis_data', 'vis_image')}"]
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert 0 <= metrics['mIoU'] <= 100


def test_missing_data_folder_is_one_line(tmp_path):
    missing = str(tmp_path / 'toy_nowhere')
    run = _tool('tools/train.py', SMOKE, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                *_data_root_options(missing))
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in run.stderr, run.stderr
    assert missing in lines[0] and 'tools/data/make_toy.py seg' in lines[0]


def _run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        errors.run(lambda: main(argv), 'train.py')
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err


def test_out_label_maps_hold_class_index_plus_one(tmp_path):
    """--out's help: with reduce_zero_label (the toy set) a PNG value is the class index + 1."""
    import numpy as np
    import torch
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    from PIL import Image
    metric = IoUMetric(output_dir=str(tmp_path))
    metric.dataset_meta = dict(classes=[str(i) for i in range(8)])
    sample = SegDataSample(metainfo=dict(img_path='x/a.png', reduce_zero_label=True))
    sample.pred_sem_seg = PixelData(data=torch.tensor([[[0, 7], [3, 1]]]))
    sample.gt_sem_seg = PixelData(data=torch.tensor([[[0, 7], [3, 1]]]))
    metric.process({}, [sample.to_dict()])
    assert np.array(Image.open(tmp_path / 'a.png')).tolist() == [[1, 8], [4, 2]]
    assert 'class index + 1 for datasets with reduce_zero_label' in ' '.join(apis_test.parser().format_help().split())


def test_bad_inputs_exit_with_one_line(tmp_path, capsys):
    no_scope = tmp_path / 'no_scope.py'
    no_scope.write_text("model = dict(type='EncoderDecoder')\n")
    code, err = _run_cli(apis_train.main, [str(no_scope)], capsys)
    assert code == 2 and len(err) == 1 and 'sets no default_scope' in err[0]

    odd_scope = tmp_path / 'odd_scope.py'
    odd_scope.write_text("default_scope = 'mmpretrain'\n")
    code, err = _run_cli(apis_train.main, [str(odd_scope)], capsys)
    assert code == 2 and len(err) == 1 and "'mmpretrain' is not supported" in err[0]

    code, err = _run_cli(apis_train.main, [SMOKE, '--launcher', 'srun'], capsys)
    assert code == 2 and "invalid choice: 'srun'" in err[-1]

    code, err = _run_cli(apis_test.main, [SMOKE, str(tmp_path / 'none.pth')], capsys)
    assert code == 2 and len(err) == 1 and 'checkpoint not found' in err[0]

    code, err = _run_cli(apis_train.main, [str(tmp_path / 'absent.py')], capsys)
    assert code == 2 and len(err) == 1 and 'config file not found' in err[0]


def test_data_check_sees_coco_paths(tmp_path):
    """Detection configs: the annotation file and the evaluator's ann_file are checked too."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'datasets', 'toy_coco.py'))
    root = tmp_path / 'toy_coco'
    (root / 'train').mkdir(parents=True)
    cfg.train_dataloader.dataset.data_root = str(root)
    with pytest.raises(errors.CliError, match='instances_train.json .*make_toy.py coco'):
        checks.check_data_paths(cfg, ['train_dataloader'], [], 'mmdet')
    cfg.val_evaluator.ann_file = str(root / 'annotations' / 'instances_val.json')
    with pytest.raises(errors.CliError, match='val_evaluator.ann_file'):
        checks.check_data_paths(cfg, [], ['val_evaluator'], 'mmdet')
    os.makedirs(root / 'annotations')
    (root / 'annotations' / 'instances_train.json').write_text('{}')
    checks.check_data_paths(cfg, ['train_dataloader'], [], 'mmdet')
