"""The sweep: cells trained + tested through the tools, report read from mmengine's files, resumable."""
import csv
import glob
import json
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from mmpatch.sweep import report
from mmpatch.sweep.cells import make_cells

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CELLS = ['configs/toy/vit_t_p8_linear.py', 'configs/toy/vit_t_p8_upernet.py']


def _sweep(work_dir, data_root, *extra):
    opts = [f'{split}_dataloader.dataset.data_root={data_root}' for split in ('train', 'val', 'test')]
    opts += ['train_cfg.max_iters=4', 'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4',
             'param_scheduler.0.end=2', 'param_scheduler.1.begin=2', 'param_scheduler.1.end=4']
    cmd = [sys.executable, 'tools/sweep.py', *CELLS, '--work-dir', str(work_dir), *extra,
           '--cfg-options', *opts]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def finished_sweep(toy_seg_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('sweep')
    proc = _sweep(work_dir, toy_seg_root)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return work_dir, proc.stdout


def test_report_reads_what_the_tools_wrote(finished_sweep):
    work_dir, stdout = finished_sweep
    with open(osp.join(work_dir, 'results.csv')) as f:
        rows = {r['config']: r for r in csv.DictReader(f)}
    assert set(rows) == {'vit_t_p8_linear', 'vit_t_p8_upernet'}
    for name, row in rows.items():
        (metrics_file,) = glob.glob(osp.join(work_dir, name, 'test', '*', '*.json'))
        with open(metrics_file) as f:
            assert float(row['mIoU']) == pytest.approx(json.load(f)['mIoU'])
        assert row['patch_size'] == '8'
    assert rows['vit_t_p8_linear']['head'] == 'linear' and rows['vit_t_p8_upernet']['head'] == 'upernet'
    assert float(rows['vit_t_p8_upernet']['params_M']) > float(rows['vit_t_p8_linear']['params_M'])
    assert osp.getsize(osp.join(work_dir, 'results.png')) > 1000
    table = open(osp.join(work_dir, 'results.md')).read()
    assert '| 8 |' in table and 'majority class' in table
    assert 'results.png' in stdout
    # a cell's log lines go to its sweep.log, also after the table was written between cells
    assert 'training from the start' not in stdout
    assert 'training from the start' in open(osp.join(work_dir, 'vit_t_p8_upernet', 'sweep.log')).read()


def test_finished_cells_are_skipped(finished_sweep, toy_seg_root):
    work_dir, _ = finished_sweep
    before = {p: osp.getmtime(p) for p in glob.glob(osp.join(work_dir, '*', 'done.json'))}
    proc = _sweep(work_dir, toy_seg_root, '--no-baseline')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '2 already done' in proc.stdout
    assert before == {p: osp.getmtime(p) for p in before}


def test_bad_sweep_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found: nope.py'):
        make_cells(['nope.py'], str(tmp_path))
    with pytest.raises(ValueError, match='key=value'):
        report.load_config(osp.join(REPO, CELLS[0]), ['no_equals_sign'])
    proc = subprocess.run([sys.executable, 'tools/sweep.py', '--backbones', 'vit_t'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and 'a grid needs --config-dir --patch-sizes --heads' in proc.stderr


def test_majority_class_miou_matches_its_definition():
    class FakeSample:
        def __init__(self, seg):
            import torch
            from mmengine.structures import PixelData
            self.gt_sem_seg = PixelData(data=torch.tensor(seg)[None])
    # class 0 is the majority (5 of 8 labelled pixels); 255 is ignored.
    segs = [[[0, 0, 1, 255]], [[0, 0, 0, 2]], [[2, 255, 255, 255]]]
    dataset = [dict(data_samples=FakeSample(s)) for s in segs]
    # IoU(0) = 5 / 8, IoU(1) = IoU(2) = 0; class 3 never occurs and is left out.
    assert report.majority_class_miou(dataset, num_classes=4) == pytest.approx(100 * (5 / 8) / 3)


@pytest.mark.parametrize('train_val', [True, False])
def test_no_train_val_reaches_training_only(tmp_path, monkeypatch, train_val):
    from mmpatch.sweep import cells
    calls = []
    monkeypatch.setattr(cells, '_launch', lambda script, args, *rest: calls.append((script, args)))
    monkeypatch.setattr(cells, 'last_checkpoint', lambda work_dir: 'iter_4.pth')
    (cell,) = make_cells([osp.join(REPO, CELLS[0])], str(tmp_path))
    cells.run_cell(cell, cfg_options=['a=1'], train_val=train_val)
    (train_script, train_args), (test_script, test_args) = calls
    assert (train_script, test_script) == ('train.py', 'test.py')
    assert (cells.NO_TRAIN_VAL in train_args) is (not train_val)
    assert cells.NO_TRAIN_VAL not in test_args and 'a=1' in train_args and 'a=1' in test_args


def test_isolated_cells_give_the_same_result(finished_sweep, toy_seg_root, tmp_path):
    # default: train/test inside the sweep's process; --isolate: one process each
    proc = _sweep(tmp_path, toy_seg_root, '--isolate')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    in_process_dir = finished_sweep[0]
    for config in CELLS:
        name = osp.splitext(osp.basename(config))[0]
        isolated, in_process = (report.read_test_metrics(str(d / name))
                                for d in (tmp_path, in_process_dir))
        metrics = ('aAcc', 'mIoU', 'mAcc')  # not the timings
        assert [isolated[k] for k in metrics] == [in_process[k] for k in metrics]
        # each in-process run writes its training scalars into its own cell
        assert report.read_train_scalars(str(in_process_dir / name))[0] is not None


def test_in_process_cell_failure_names_the_problem(tmp_path):
    proc = _sweep(tmp_path, tmp_path / 'no_such_data')
    assert proc.returncode != 0
    assert 'vit_t_p8_linear failed: train.py failed: dataset path not found' in proc.stderr
    assert 'sweep.log' in proc.stderr and 'Traceback' not in proc.stderr


def test_unfinished_cells_are_named_under_the_table(finished_sweep, tmp_path):
    work_dir = tmp_path / 'sweep'
    shutil.copytree(finished_sweep[0], work_dir)
    unstarted = 'configs/toy/vit_t_p4_linear.py'
    proc = subprocess.run([sys.executable, 'tools/sweep.py', *CELLS, unstarted, '--work-dir', str(work_dir),
                           '--collect-only', '--no-baseline'], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = 'No result yet, not in the table: vit_t_p4_linear.'
    assert line in proc.stdout and line in open(osp.join(work_dir, 'results.md')).read()
    assert 'No result yet' not in report.markdown_table([], unfinished=())


def test_a_sweep_cut_short_leaves_the_table_of_its_finished_cells(finished_sweep, tmp_path,
                                                                   monkeypatch):
    import runpy

    from mmpatch.sweep import cells
    done_dir = finished_sweep[0]

    def fake_run_cell(cell, **kwargs):  # the first cell finishes (its real files), the next fails
        if cell.name == 'vit_t_p8_linear':
            shutil.copytree(osp.join(done_dir, cell.name), cell.work_dir, dirs_exist_ok=True)
        else:
            raise RuntimeError('killed')
    monkeypatch.setattr(cells, 'run_cell', fake_run_cell)
    main = runpy.run_path(osp.join(REPO, 'tools', 'sweep.py'))['main']
    with pytest.raises(SystemExit, match='vit_t_p8_upernet failed: killed'):
        main([*CELLS, '--work-dir', str(tmp_path), '--no-baseline'])
    with open(tmp_path / 'results.csv') as f:
        assert [r['config'] for r in csv.DictReader(f)] == ['vit_t_p8_linear']
    table = (tmp_path / 'results.md').read_text()
    assert 'No result yet, not in the table: vit_t_p8_upernet.' in table
    assert osp.getsize(tmp_path / 'results.png') > 1000
