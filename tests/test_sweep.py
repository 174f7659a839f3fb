"""The sweep: (config, seed) cells trained + tested by mmpatch's entry points, the report read from
mmengine's files (curves, per-image statistics, verdicts), resumable, in one or several processes."""
import csv
import glob
import json
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mmpatch.apis.config import load_config
from mmpatch.sweep import report
from mmpatch.sweep.cells import NO_TRAIN_VAL, cell_runs, command_line, make_cells
from mmpatch.utils.errors import UserError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CELLS = ['configs/toy/vit_t_p8_linear.py', 'configs/toy/vit_t_p8_upernet.py']
SHORT = '0.01'  # 400 iterations -> 4, validation every iteration


def _sweep(work_dir, data_root, *extra, configs=CELLS):
    opts = [f'{split}_dataloader.dataset.data_root={data_root}' for split in ('train', 'val', 'test')]
    cmd = [sys.executable, 'tools/sweep.py', *configs, '--work-dir', str(work_dir),
           '--iters-scale', SHORT, *extra, '--cfg-options', *opts]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _train_log(cell_dir):
    """The text of the cell's training logs (mmengine's <cell>/<stamp>/<stamp>.log)."""
    return ''.join(open(p).read() for p in sorted(glob.glob(osp.join(cell_dir, '2*', '2*.log'))))


def _rows(work_dir):
    with open(osp.join(work_dir, 'results.csv')) as f:
        return {(r['config'], r['seed']): r for r in csv.DictReader(f)}


@pytest.fixture(scope='module')
def finished_sweep(toy_seg_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('sweep')
    proc = _sweep(work_dir, toy_seg_root, '--seeds', '0', '1')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return work_dir, proc.stdout


def test_report_reads_what_the_tools_wrote(finished_sweep):
    work_dir, stdout = finished_sweep
    rows = _rows(work_dir)
    assert set(rows) == {(n, s) for n in ('vit_t_p8_linear', 'vit_t_p8_upernet') for s in '01'}
    for (name, seed), row in rows.items():
        cell_dir = osp.join(work_dir, name, f'seed{seed}')
        (metrics_file,) = glob.glob(osp.join(cell_dir, 'test', '*', '*.json'))
        with open(metrics_file) as f:
            assert float(row['mIoU']) == pytest.approx(json.load(f)['mIoU'])
        assert row['patch_size'] == '8'
        # the per-image statistics of the test, and the bootstrap interval around the mIoU
        with np.load(osp.join(cell_dir, 'test', 'per_image.npz')) as f:
            assert f['intersect'].shape == (4, 8)  # the fixture's 4 validation images, 8 classes
        assert float(row['boot_lo']) <= float(row['mIoU']) <= float(row['boot_hi'])
        # the convergence curve: a validation at each of the 4 iterations
        assert [int(p.split(':')[0]) for p in row['curve'].split()] == [1, 2, 3, 4]
        assert row['converged'] in ('True', 'False')
    assert rows[('vit_t_p8_linear', '0')]['head'] == 'linear'
    assert float(rows[('vit_t_p8_upernet', '0')]['params_M']) > float(rows[('vit_t_p8_linear', '0')]['params_M'])
    assert osp.getsize(osp.join(work_dir, 'results.png')) > 1000
    text = open(osp.join(work_dir, 'results.md')).read()
    assert '## Verdicts' in text and '| 8 | 2 |' in text and 'majority class' in text
    assert 'cells not converged' in stdout and 'results.png' in stdout
    # a cell's log lines go to its own log file (mmengine's, in its work dir), not to the console
    assert 'training from the start' not in stdout
    assert 'training from the start' in _train_log(osp.join(work_dir, 'vit_t_p8_upernet', 'seed1'))


def test_seeds_change_the_result(finished_sweep):
    rows = _rows(finished_sweep[0])
    for name in ('vit_t_p8_linear', 'vit_t_p8_upernet'):
        assert rows[(name, '0')]['curve'] != rows[(name, '1')]['curve']


def test_the_seed_sets_initialisation_and_data_order(toy_seg_root):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmpatch  # noqa: F401

    def first_draws(seed):
        cfg = Config.fromfile(osp.join(REPO, CELLS[0]))
        cfg.merge_from_dict({'randomness.seed': seed,
                             'train_dataloader.dataset.data_root': str(toy_seg_root)})
        cfg.work_dir = '/tmp/mmpatch_seed_check'
        runner = Runner.from_cfg(cfg)
        sampler_seed = runner.build_dataloader(cfg.train_dataloader).sampler.seed
        weight = next(runner.model.parameters()).detach().flatten()[:8].clone()
        return sampler_seed, weight

    (s0, w0), (s0b, w0b), (s1, w1) = first_draws(0), first_draws(0), first_draws(1)
    assert s0 == s0b and bool((w0 == w0b).all())  # the same seed: the same draws
    assert s0 != s1 and not bool((w0 == w1).all())  # another seed: other data order and init


def test_finished_cells_are_skipped_and_a_half_done_cell_resumes(finished_sweep, toy_seg_root,
                                                                 tmp_path):
    work_dir = tmp_path / 'sweep'
    shutil.copytree(finished_sweep[0], work_dir)
    cell = work_dir / 'vit_t_p8_upernet' / 'seed1'
    (cell / 'done.json').unlink()  # trained, not tested: the cell resumes from its checkpoint
    before = {p: osp.getmtime(p) for p in glob.glob(str(work_dir / '*' / '*' / 'done.json'))}
    proc = _sweep(work_dir, toy_seg_root, '--seeds', '0', '1', '--no-baseline')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '3 already done' in proc.stdout and 'vit_t_p8_upernet/seed1' in proc.stdout
    assert before == {p: osp.getmtime(p) for p in before}
    assert 'resumed' in _train_log(str(cell))
    assert len(_rows(work_dir)) == 4


def test_bad_sweep_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found: nope.py'):
        make_cells(['nope.py'], [0], str(tmp_path))
    with pytest.raises(ValueError, match='distinct seeds'):
        make_cells([osp.join(REPO, CELLS[0])], [1, 1], str(tmp_path))
    with pytest.raises(UserError, match='key=value'):
        load_config(osp.join(REPO, CELLS[0]), ['no_equals_sign'])
    proc = subprocess.run([sys.executable, 'tools/sweep.py', '--backbones', 'vit_t'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and 'a grid needs --config-dir --patch-sizes --heads' in proc.stderr
    proc = subprocess.run([sys.executable, 'tools/sweep.py', CELLS[0], '--jobs', '2', '--gpus', '2'],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and '--jobs 1' in proc.stderr


def test_cells_are_ordered_seed_by_seed(tmp_path):
    cells = make_cells([osp.join(REPO, c) for c in CELLS], [0, 1], str(tmp_path))
    assert [c.key for c in cells] == ['vit_t_p8_linear/seed0', 'vit_t_p8_upernet/seed0',
                                      'vit_t_p8_linear/seed1', 'vit_t_p8_upernet/seed1']
    assert cells[3].work_dir == osp.join(str(tmp_path), 'vit_t_p8_upernet', 'seed1')


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


@pytest.mark.parametrize('train_val,per_image,scale', [(True, True, 2.0), (False, False, None)])
def test_cell_arguments(tmp_path, train_val, per_image, scale):
    (cell,) = make_cells([osp.join(REPO, CELLS[0])], [3], str(tmp_path))
    train_kwargs, test_kwargs = cell_runs(cell, ['a=1'], scale, train_val, per_image)
    assert train_kwargs['resume'] == 'auto' and train_kwargs['iters_scale'] == scale
    assert test_kwargs['work_dir'] == osp.join(cell.work_dir, 'test')
    # the same runs as command lines (torchrun, launchers)
    train, test = command_line(train_kwargs), command_line(test_kwargs, 'ckpt.pth')
    assert 'randomness.seed=3' in train and 'randomness.seed=3' in test and 'a=1' in test
    assert (NO_TRAIN_VAL in train) is (not train_val) and NO_TRAIN_VAL not in test
    assert ('--iters-scale' in train) is (scale is not None) and '--iters-scale' not in test
    assert any('per_image_file' in a for a in test) is per_image
    assert '--resume' in train and test[test.index('--work-dir') + 1] == osp.join(cell.work_dir, 'test')
    assert test[:2] == [cell.config, 'ckpt.pth']
    # each run names its mmengine global instances (logger, visualizer) after the cell
    assert 'experiment_name=vit_t_p8_linear_seed3_train' in train
    assert 'visualizer.name=vit_t_p8_linear_seed3_test' in test


def test_worker_processes_give_the_same_result(finished_sweep, toy_seg_root, tmp_path):
    # default: cells inside the sweep's process; --jobs 2 --isolate: a fresh worker per cell,
    # one thread each (the sums run in another order: equal up to float rounding)
    proc = _sweep(tmp_path, toy_seg_root, '--seeds', '0', '--jobs', '2', '--isolate', '--no-baseline')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    in_process, workers = _rows(finished_sweep[0]), _rows(tmp_path)
    assert set(workers) == {('vit_t_p8_linear', '0'), ('vit_t_p8_upernet', '0')}
    for key, row in workers.items():
        assert float(row['mIoU']) == pytest.approx(float(in_process[key]['mIoU']), abs=0.5)
        assert report.read_train_scalars(str(tmp_path / key[0] / 'seed0'))[0] is not None


def test_in_process_cell_failure_names_the_problem(tmp_path):
    proc = _sweep(tmp_path, tmp_path / 'no_such_data', '--seeds', '0')
    assert proc.returncode != 0
    assert 'vit_t_p8_linear/seed0 failed: train failed: dataset path not found' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_unfinished_cells_are_named_under_the_report(finished_sweep, tmp_path):
    work_dir = tmp_path / 'sweep'
    shutil.copytree(finished_sweep[0], work_dir)
    unstarted = 'configs/toy/vit_t_p4_linear.py'
    proc = subprocess.run([sys.executable, 'tools/sweep.py', *CELLS, unstarted, '--work-dir', str(work_dir),
                           '--seeds', '0', '1', '--collect-only', '--no-baseline'], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = 'No result yet, not in the table: vit_t_p4_linear/seed0, vit_t_p4_linear/seed1.'
    assert line in proc.stdout and line in open(osp.join(work_dir, 'results.md')).read()


def test_a_sweep_cut_short_leaves_the_report_of_its_finished_cells(finished_sweep, tmp_path,
                                                                    monkeypatch):
    from mmpatch.sweep import cells, cli
    done_dir = finished_sweep[0]

    def fake_run_cell(cell, **kwargs):  # the first cell finishes (its real files), the next fails
        if cell.name == 'vit_t_p8_linear':
            shutil.copytree(osp.join(done_dir, cell.name, 'seed0'), cell.work_dir, dirs_exist_ok=True)
        else:
            raise RuntimeError('killed')
    monkeypatch.setattr(cells, 'run_cell', fake_run_cell)
    with pytest.raises(SystemExit, match='vit_t_p8_upernet/seed0 failed: killed'):
        cli.main([*(osp.join(REPO, c) for c in CELLS), '--work-dir', str(tmp_path), '--seeds', '0',
                  '--no-baseline'])
    assert list(_rows(tmp_path)) == [('vit_t_p8_linear', '0')]
    text = (tmp_path / 'results.md').read_text()
    assert 'No result yet, not in the table: vit_t_p8_upernet/seed0.' in text
    assert osp.getsize(tmp_path / 'results.png') > 1000


def _synthetic_rows(gap_small_p):
    """Three seeds of a backbone whose linear head gains ~10 points per halving of p."""
    rows = []
    for seed, noise in enumerate((0.0, 0.6, -0.4)):
        for p, lin in ((8, 40.0), (4, 50.0), (2, 60.0)):
            up = lin + (gap_small_p if p == 2 else 15.0)
            rows += [dict(config=f'vit_p{p}_linear', backbone='ViT', patch_size=p, head='linear',
                          seed=seed, mIoU=lin + noise, converged=True, last_quarter_gain=0.1,
                          boot_lo=None, boot_hi=None, params_M=1.0, gflops=1.0, train_img_s=None,
                          peak_mem_MB=None),
                     dict(config=f'vit_p{p}_upernet', backbone='ViT', patch_size=p, head='upernet',
                          seed=seed, mIoU=up + 2 * noise, converged=seed != 2,
                          last_quarter_gain=0.1 if seed != 2 else 3.0, boot_lo=up - 1,
                          boot_hi=up + 1, params_M=2.0, gflops=2.0, train_img_s=None,
                          peak_mem_MB=None)]
    return rows


def test_report_verdicts_on_known_numbers():
    text = report.markdown_report(_synthetic_rows(gap_small_p=-5.0), baseline_miou=3.0)
    lines = [line for line in text.splitlines() if line.startswith('- ViT')]
    assert lines[0].startswith('- ViT: (a) linear head gains +10.') and lines[0].endswith('holds')
    # the gap goes from +15 at p8 to -5 at p2: it shrinks, and the word says so
    assert '(b) UperNet - linear gap changes by -20.' in lines[1] and 'holds' in lines[1]
    assert '2 cells not converged' in lines[1] and lines[2] == (
        '- ViT: 3 of 18 cells not converged (last-quarter gain > 1 mIoU); '
        '0 of 18 at the majority-class floor (mIoU < 3.00 + 1)')
    assert 'Not converged (mIoU gained over the last quarter of training): vit_p8_upernet/seed2 (+3.0)' in text
    reversed_text = report.markdown_report(_synthetic_rows(gap_small_p=30.0))
    assert 'reversed' in [line for line in reversed_text.splitlines() if '(b)' in line][0]


def test_cells_at_the_majority_floor_are_named():
    # a baseline of 45: the p8 linear cells (40 +- 0.6) learned nothing beyond it
    text = report.markdown_report(_synthetic_rows(gap_small_p=-5.0), baseline_miou=45.0)
    assert '3 of 18 at the majority-class floor (mIoU < 45.00 + 1)' in text
    assert ('At the majority-class floor (learned little beyond the most frequent class): '
            'vit_p8_linear/seed0, vit_p8_linear/seed1, vit_p8_linear/seed2.') in text
    assert 'majority-class floor' not in report.markdown_report(_synthetic_rows(-5.0))


@pytest.mark.parametrize('backbone,p,head,name', [
    ('PatchViT (64d x 4 blocks)', 8, 'linear', 'vit_t_p8_linear'),  # configs/toy: toy size -> T
    ('PatchViT (small)', 8, 'upernet', 'vit_s_p8_upernet'),  # configs/toy_gpu
    ('PatchMamba (base)', 2, 'linear', 'adventurer_b_p2_linear'),
    ('PatchMamba (t)', 4, 'upernet', 'adventurer_t_p4_upernet'),
    ('PatchMamba (700d x 2 blocks)', 16, 'linear', 'adventurer_b_p16_linear'),
    ('VisionTransformer (base)', 16, 'linear', None),
    ('PatchViT (64d x 4 blocks)', 8, 'simple', 'vit_t_p8_cascade_mask_rcnn'),  # configs/toy_det
    ('PatchMamba (base)', 4, 'simple', 'adventurer_b_p4_cascade_mask_rcnn'),
    ('PatchViT (base)', 8, 'multidepth', None),  # no full-size config has this neck
])
def test_full_size_config_of_a_cell(backbone, p, head, name):
    assert report.full_size_config(backbone, p, head) == name
    if name:
        folder = 'coco' if name.endswith('mask_rcnn') else 'ade20k'
        assert osp.isfile(osp.join(REPO, 'configs', folder, f'{name}.py'))


def test_full_size_config_of_the_toy_configs():
    for config, name in (('configs/toy/vit_t_p8_linear.py', 'vit_t_p8_linear'),
                         ('configs/toy_gpu/vit_s_p8_upernet.py', 'vit_s_p8_upernet')):
        cfg = load_config(osp.join(REPO, config))
        assert report.full_size_config(*report.describe_model(cfg)) == name


def test_cost_column_reads_the_newest_cost_table(tmp_path, monkeypatch):
    monkeypatch.setattr(report, 'COST_TABLES', str(tmp_path / '*' / 'cost.csv'))
    assert report.read_cost_table() == {}  # no table: the column stays blank
    for folder, hours in (('h200_2026-12-10_aaaaaaa', 50.0), ('h100_2026-12-04_bbbbbbb', 70.0)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / 'cost.csv').write_text(
            'config,s_per_iter,gpu_hours,source\n'
            f'vit_p8_linear,0.1,{hours},measured\nvit_p8_upernet,,,error\n')
    assert report.read_cost_table() == {'vit_p8_linear': 50.0}  # the newest date, not the name
    rows = _synthetic_rows(gap_small_p=-5.0)
    for r in rows:
        r['full_gpu_h'] = 50.0 if r['config'] == 'vit_p8_linear' else None
    text = report.markdown_report(rows)
    assert '| full-size config, GPU-h on 8 GPUs (lin / Uper) |' in text
    assert [line for line in text.splitlines() if line.startswith('| 8 |')][0].endswith(
        '| 50 / - |')
