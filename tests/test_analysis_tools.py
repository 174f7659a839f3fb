"""``tools/analysis``: one CPU smoke test per sub-command of ``benchmark.py`` and ``check.py``,
tiny sizes, and the pure parts of the benchmark (row order, ratios, anchor check, fresh
processes)."""
import csv
import importlib
import json
import math
import os
import runpy
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS = ROOT / 'tools' / 'analysis'


@pytest.fixture(autouse=True)
def analysis_on_path(monkeypatch):
    """tools/analysis on sys.path, as when its scripts run (``perfkit`` importable)."""
    monkeypatch.syspath_prepend(str(ANALYSIS))


def run(script, *argv):
    """``python tools/analysis/<script> *argv`` in this process; what its sub-command returns."""
    return runpy.run_path(str(ANALYSIS / script), run_name='tool_under_test')['main'](
        [str(a) for a in argv])


def perfkit(name):
    return importlib.import_module(f'perfkit.{name}')


# ------------------------------------------------------------------ benchmark.py

def test_benchmark_models_and_report_cpu_smoke(tmp_path):
    # two rows (each in a fresh process: seconds of imports each), the kernels in a third
    model_rows, sdpa_rows = run('benchmark.py', 'models', '--device', 'cpu', '--tiny',
                                '--backbones', 'PatchViT', 'timm', '--patch-sizes', 16,
                                '--out', tmp_path)
    assert [r['backbone'] for r in model_rows] == ['timm', 'PatchViT']  # the anchor first
    assert all(r['status'] == 'ok' and r['images_per_s'] > 0 and r['model_tflops'] > 0
               for r in model_rows)
    pids = [r['pid'] for r in model_rows]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # each row in a process of its own
    assert model_rows[1]['speed_vs_timm'] > 0 and 'frac_matmul_ceiling' in model_rows[1]
    checked = [r for r in sdpa_rows if r.get('status') == 'ok']
    assert checked and all(r['err_out'] < 1e-5 and r['err_grad'] < 1e-5 for r in checked)
    for name in ('models.csv', 'sdpa.csv', 'env.json', 'benchmark.md', 'benchmark.png'):
        assert (tmp_path / name).stat().st_size > 0
    env = json.loads((tmp_path / 'env.json').read_text())
    assert env['device_name'] and env['kernels_pid'] not in pids + [os.getpid()]
    (tmp_path / 'benchmark.md').unlink()  # the report alone rebuilds it from the CSVs
    run('benchmark.py', 'report', '--out', tmp_path)
    assert 'alone in a fresh process' in (tmp_path / 'benchmark.md').read_text()


@pytest.mark.parametrize('backbone,patch,batch', [('mmseg', 16, 2), ('PatchMamba', 4, 1)])
def test_benchmark_row_cpu_smoke(tmp_path, capsys, backbone, patch, batch):
    # what each row's process runs (here in the test's process, which is cheaper)
    row = run('benchmark.py', 'row', '--backbone', backbone, '--patch-size', patch,
              '--batch', batch, '--device', 'cpu', '--tiny', '--out', tmp_path)
    assert row['status'] == 'ok' and row['images_per_s'] > 0 and row['pid'] == os.getpid()
    assert row['with_cp'] == (patch == 4)  # above the tiny grid's cp_from_tokens
    mark = perfkit('utils').RESULT_MARK
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith(mark)]
    assert json.loads(line[len(mark):])['row'] == row


def test_benchmark_runs_the_anchor_first_and_its_repeat_last():
    planned_rows = perfkit('models').planned_rows
    grid = [(16, 16, ('PatchViT', 'timm', 'PatchMamba')), (8, 4, ('PatchViT', 'timm'))]
    assert planned_rows(grid, anchor_repeat=True) == [
        ('timm', 16, 16, None), ('PatchViT', 16, 16, None), ('PatchMamba', 16, 16, None),
        ('PatchViT', 8, 4, None), ('timm', 8, 4, None), ('timm', 16, 16, 'anchor-repeat')]
    assert planned_rows(grid, patch_sizes=[8], anchor_repeat=True) == [
        ('timm', 8, 4, None), ('PatchViT', 8, 4, None), ('timm', 8, 4, 'anchor-repeat')]
    assert planned_rows(grid, backbones=['PatchViT'], anchor_repeat=True) == [
        ('PatchViT', 16, 16, None), ('PatchViT', 8, 4, None)]  # no timm: no anchor


def test_benchmark_anchor_check_and_ratios_use_timm_alone():
    models = perfkit('models')

    def row(backbone, img_s, role=None):
        return dict(backbone=backbone, patch_size=16, batch=16, status='ok', images_per_s=img_s,
                    **(dict(role=role) if role else {}))
    rows = models.add_ratios([row('timm', 400.), row('PatchViT', 500.),
                              row('timm', 410., 'anchor-repeat')])
    assert rows[1]['speed_vs_timm'] == 500. / 400.  # the grid's timm row, not the repeat
    assert 'speed_vs_timm' not in rows[2]
    assert models.anchor_check(rows) == 'anchor check: timm p16 400 vs 410 img/s, within 2.5%: ok'
    rows[2]['images_per_s'] = 420.
    assert models.anchor_check(rows).endswith('within 5.0%: FAILED (>3%)')
    assert models.anchor_check(rows[:2]) is None


def test_fresh_rows_keep_a_failed_childs_row(tmp_path):
    utils = perfkit('utils')
    script = tmp_path / 'child.py'
    script.write_text('import sys\nprint("about to fail")\nsys.exit(3)\n')
    assert utils.run_fresh_process(str(script), []) == dict(
        status='error: exit code 3: about to fail')
    seen = []
    rows, env = utils.fresh_rows(str(script), [(['a'], dict(patch_size=8))],
                                 on_row=lambda rows: seen.append(len(rows)))
    assert rows == [dict(patch_size=8, status='error: exit code 3: about to fail')]
    assert env == {} and seen == [1]
    script.write_text('import time\ntime.sleep(30)\n')
    assert utils.run_fresh_process(str(script), [], timeout=1)['status'] == \
        'error: killed after 1 s'


def test_benchmark_seg_iteration_cpu_smoke(tmp_path, monkeypatch):
    from mmpatch.fast import HostLogEncoderDecoder, StackedSegDataPreProcessor
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)  # fused rows: the matmul path on CPU
    batches_seen, host_log_steps = [], []  # by the stacked preprocessor: only stacked batches
    real_forward, real_step = StackedSegDataPreProcessor.forward, HostLogEncoderDecoder.train_step
    monkeypatch.setattr(StackedSegDataPreProcessor, 'forward', lambda self, data, training=False: (
        batches_seen.append(torch.is_tensor(data['inputs'])) or real_forward(self, data, training)))
    monkeypatch.setattr(HostLogEncoderDecoder, 'train_step', lambda self, *args: (
        host_log_steps.append(1) or real_step(self, *args)))
    rows = run('benchmark.py', 'seg-iteration', '--device', 'cpu', '--tiny', '--profile',
               '--out', tmp_path)
    assert [r['what'] for r in rows] == [
        'loader', 'backbone', 'segmentor', 'segmentor_mmseg_loss', 'end_to_end',
        'end_to_end_stacked', 'end_to_end_stacked_fused',
        'end_to_end_stacked_fused_prefetch_host_log']
    assert all(r['images_per_s'] > 0 for r in rows) and not any('status' in r for r in rows)
    assert batches_seen and all(batches_seen)
    assert len(host_log_steps) == 1 + 3  # the last row's warm-up and timed steps
    assert rows[1]['time_vs_backbone'] == 1 and rows[0]['time_vs_backbone'] is None
    assert (tmp_path / 'seg_iteration.csv').stat().st_size > 0
    plain = (tmp_path / 'seg_iteration_profile_segmentor.txt').read_text()
    assert '3 segmentor steps' in plain and 'upsample_bilinear2d_backward' not in plain
    mmseg = (tmp_path / 'seg_iteration_profile_segmentor_mmseg_loss.txt').read_text()
    assert 'upsample_bilinear2d_backward' in mmseg
    assert '3 backbone steps' in (tmp_path / 'seg_iteration_profile_backbone.txt').read_text()


def test_seg_iteration_broken_row_costs_only_itself(tmp_path, monkeypatch):
    from mmpatch.models.heads.linear_head import LinearHead
    real = LinearHead._fused_loss

    def broken(self, *args):
        if self.fast_loss == 'fused':
            raise RuntimeError('kernel failed to compile\nsecond line')
        return real(self, *args)
    monkeypatch.setattr(LinearHead, '_fused_loss', broken)
    rows = run('benchmark.py', 'seg-iteration', '--device', 'cpu', '--tiny', '--rows',
               'segmentor', 'end_to_end_stacked_fused', '--out', tmp_path)
    by_what = {r['what']: r for r in rows}
    assert list(by_what) == ['loader', 'backbone', 'segmentor', 'end_to_end_stacked_fused']
    assert by_what['end_to_end_stacked_fused']['status'] == \
        'error: RuntimeError: kernel failed to compile'
    assert by_what['segmentor']['ms_per_iter'] > 0
    assert 'kernel failed to compile' in (tmp_path / 'seg_iteration.md').read_text()


def test_benchmark_detection_cpu_smoke(tmp_path):
    rows = run('benchmark.py', 'detection', '--device', 'cpu', '--tiny', '--patch-sizes', 8,
               '--steps', 1, '--warmup', 0, '--out', tmp_path)
    assert len(rows) == 1 and rows[0]['patch_size'] == 8
    assert rows[0]['pid'] != os.getpid()  # the row ran in a fresh process
    assert rows[0]['s_per_iter'] > 0 and math.isfinite(rows[0]['loss'])
    assert rows[0]['tokens_per_image'] == math.ceil(64 / 8) * math.ceil(96 / 8)
    assert (tmp_path / 'detection.md').read_text().startswith('| config |')
    assert json.loads((tmp_path / 'detection.json').read_text())['env']['device_name'] == 'cpu'


# ------------------------------------------------------------------ benchmark.py cost

def test_benchmark_cost_row_cpu_smoke(capsys):
    # what each row's process runs (here in the test's process, which is cheaper): a detector
    row = run('benchmark.py', 'cost-row', ROOT / 'configs/coco/vit_t_p32_cascade_mask_rcnn.py',
              '--device', 'cpu', '--tiny', '--warmup', 1, '--steps', 1)
    assert row['status'] == 'measured' and row['measured_s_per_iter'] > 0, row
    assert (row['task'], row['head'], row['batch'], row['pid']) == (
        'COCO', 'cascade_mask_rcnn', 2, os.getpid())
    assert row['iterations'] == 12 * math.ceil(118287 / (2 * 8))  # 12 epochs on 8 GPUs
    assert row['tokens'] == 2 * 3 and row['input_hw'] == '64x96'  # tiny images, stride 32
    assert row['fwd_gflops'] > 0 and 'backbone + neck' in row['flops_scope']
    assert row['timed_steps'] == 1 and row['optim'] == 'OptimWrapper'  # AMP needs a GPU
    mark = perfkit('utils').RESULT_MARK
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith(mark)]
    assert json.loads(line[len(mark):])['row'] == row


def test_benchmark_cost_cpu_smoke(tmp_path):
    # one row in a fresh process (ViT-T + UperNet, timed), then the tables
    rows = run('benchmark.py', 'cost', '--device', 'cpu', '--tiny', '--configs',
               'configs/ade20k/vit_t_p8_upernet.py', '--warmup', 1, '--steps', 1, '--out', tmp_path)
    [row] = rows
    assert row['status'] == 'measured' and row['pid'] != os.getpid()
    assert row['iterations'] == 160000 and row['tokens'] == 8 * 8  # 64 px tiny crops
    with open(tmp_path / 'cost.csv') as f:
        [written] = csv.DictReader(f)
    assert written['source'] == 'measured' and float(written['gpu_hours']) == round(
        row['measured_s_per_iter'] * 160000 * 8 / 3600, 1)
    text = (tmp_path / 'cost.md').read_text()
    assert '## ADE20K' in text and 'data loader is excluded' in text and '--tiny' in text


def test_benchmark_cost_row_only_counts_a_projected_size(capsys):
    row = run('benchmark.py', 'cost-row', ROOT / 'configs/ade20k/vit_s_p16_linear.py', '--device',
              'cpu', '--tiny', '--project-only', 'size S (--project-sizes)')
    assert row['status'] == 'not run: size S (--project-sizes)' and row['fwd_gflops'] > 0
    assert 'measured_s_per_iter' not in row and row['arch'] == 'ViT-S'
    assert 'decode head' in row['flops_scope']


def _cost_row(config, status='measured', s=None, tokens=1024, fwd=100., size='t', **extra):
    row = dict(config=config, task='ADE20K', family='vit', head='linear', size=size, p=16,
               tokens=tokens, batch=2, iterations=160000, fwd_gflops=fwd, status=status)
    row.update(extra)
    if s is not None:
        row['measured_s_per_iter'] = s
    return row


def test_cost_projection_from_the_nearest_measured_config():
    project = perfkit('cost_report').project
    rows = project([
        _cost_row('vit_t_p16_linear', s=0.5, tokens=1024, fwd=100.),
        _cost_row('vit_b_p2_linear', s=3.0, tokens=65536, fwd=150000., size='b'),
        _cost_row('vit_t_p2_linear', s=0.6, tokens=65536, fwd=40000.),
        _cost_row('vit_t_p1_linear', status='not run: too many FLOPs', tokens=262144, fwd=160000.),
        _cost_row('vit_s_p8_linear', status='OOM', tokens=4096, fwd=800.),
        _cost_row('adventurer_t_p1_linear', status='not run', tokens=262144, fwd=9.,
                  family='adventurer')])
    by = {r['config']: r for r in rows}
    t16 = by['vit_t_p16_linear']
    assert t16['source'] == 'measured' and t16['model_tflops'] == round(3 * 100 * 2 / 1e3 / 0.5, 1)
    assert t16['gpu_hours'] == round(0.5 * 160000 * 8 / 3600, 1)  # s/iter x iterations x 8 GPUs
    assert t16['days_8gpu'] == round(0.5 * 160000 / 86400, 2)
    # p1: nearest tokens are both p2 rows; the same size (T) wins; 4x its FLOPs, 4x its time
    t1 = by['vit_t_p1_linear']
    assert t1['source'].startswith('projected from vit_t_p2_linear (')
    assert t1['source'].endswith('; not run: too many FLOPs')
    assert t1['s_per_iter'] == pytest.approx(4 * 0.6) and t1['gpu_hours'] == round(
        t1['s_per_iter'] * 160000 * 8 / 3600, 1)
    # S has no measured row: T's rows, interpolated in log tokens between p16 and p2
    s8 = by['vit_s_p8_linear']
    assert s8['source'].startswith('projected at ') and s8['source'].endswith('; OOM')
    assert 'between vit_t_p16_linear' in s8['source'] and 'and vit_t_p2_linear' in s8['source']
    rate16, rate2 = 3 * 100 * 2 / 1e3 / 0.5, 3 * 40000 * 2 / 1e3 / 0.6
    rate8 = math.exp(2 / 3 * math.log(rate16) + 1 / 3 * math.log(rate2))  # 4096: 2 of 6 octaves
    assert s8['s_per_iter'] == pytest.approx(3 * 800 * 2 / 1e3 / rate8, rel=1e-3)
    # no measured row of its family: nothing to project from, no cost
    adv = by['adventurer_t_p1_linear']
    assert 'nothing measured' in adv['source'] and 'gpu_hours' not in adv


def test_cost_schedule_iterations():
    from mmengine.config import Config
    cost = perfkit('cost')
    coco = Config(dict(train_cfg=dict(max_epochs=12),
                       train_dataloader=dict(batch_size=2, dataset=dict(type='CocoDataset'))))
    assert cost.schedule_iterations(coco) == 12 * math.ceil(118287 / (2 * 8)) == 88716
    assert cost.schedule_iterations(Config(dict(train_cfg=dict(max_iters=160000)))) == 160000
    coco.train_dataloader.dataset.type = 'LVISDataset'
    with pytest.raises(ValueError, match='LVISDataset: number of training images unknown'):
        cost.schedule_iterations(coco)


def test_cost_report_merges_runs(tmp_path):
    report = perfkit('cost_report')
    first, second = tmp_path / 'a', tmp_path / 'b'
    report.write_report([_cost_row('vit_t_p16_linear', s=0.5),
                         _cost_row('vit_t_p8_linear', status='not run', tokens=4096, fwd=400.)],
                        first, {})
    report.write_report([_cost_row('vit_t_p8_linear', s=0.9, tokens=4096, fwd=400.),
                         _cost_row('vit_t_p16_linear', status='not run'),
                         dict(_cost_row('vit_t_p32_cascade_mask_rcnn', s=0.2), task='COCO',
                              head='cascade_mask_rcnn', iterations=88716)], second, {})
    rows = run('benchmark.py', 'cost-report', '--inputs', first, second, '--out', tmp_path)
    by = {r['config']: r for r in rows}
    assert by['vit_t_p16_linear']['s_per_iter'] == 0.5  # measured in a beats not run in b
    assert (by['vit_t_p8_linear']['source'], by['vit_t_p8_linear']['s_per_iter']) == (
        'measured', 0.9)
    text = (tmp_path / 'cost.md').read_text()
    assert text.index('## ADE20K') < text.index('## COCO') and '88,716 iterations' in text
    assert ('| config | arch | p | head/detector | tokens | batch/GPU | s/iter | peak GiB/GPU '
            '| GPU-hours, full schedule | days on 8 GPUs | measured / projected |') in text
    with pytest.raises(SystemExit, match='no .*cost.csv'):
        run('benchmark.py', 'cost-report', '--inputs', tmp_path / 'none', '--out', tmp_path)


FAKE_ROW = r"""import json, sys, time
READY, RESULT = {ready!r}, {result!r}
name, mode, log = sys.argv[2], sys.argv[3], sys.argv[4]
row = dict(config=name, fwd_gflops=1.0)
def note(word):
    with open(log, 'a') as f:
        f.write(f'{word} {name}\n')
note('start')
if mode == 'projected':
    print(RESULT + json.dumps(dict(row=dict(row, status='not run: S'))))
    sys.exit(0)
print(READY + json.dumps(row), flush=True)
word = sys.stdin.readline().strip()
if word != 'go':
    print(RESULT + json.dumps(dict(row=dict(row, status='not run: limit'))))
    sys.exit(0)
note('go')
if mode == 'hang':
    time.sleep(60)
if mode == 'crash':
    print('CUDA error: an illegal memory access', flush=True)
    sys.exit(3)
time.sleep(0.2)
note('end')
print(RESULT + json.dumps(dict(row=dict(row, status='measured'))))
"""


def test_cost_rows_take_the_device_one_at_a_time(tmp_path):
    cost = perfkit('cost')
    script, log = tmp_path / 'fake_row.py', tmp_path / 'log.txt'
    script.write_text(FAKE_ROW.replace('{ready!r}', repr(cost.READY_MARK)).replace(
        '{result!r}', repr(perfkit('utils').RESULT_MARK)))
    modes = dict(a='ok', b='projected', c='hang', d='crash', e='ok', f='ok')
    plans = [(name, ['cost-row', name, mode, log]) for name, mode in modes.items()]
    rows = cost.run_rows(plans, script=str(script), prefetch=2, row_timeout=1.5)
    assert [(r['config'], r['status']) for r in rows] == [
        ('a', 'measured'), ('b', 'not run: S'), ('c', 'timeout: killed after 1.5 s'),
        ('d', 'error: exit code 3: CUDA error: an illegal memory access'), ('e', 'measured'),
        ('f', 'measured')]
    assert all(r['fwd_gflops'] == 1.0 for r in rows)  # the prepared row is kept: projectable
    events = [line.split() for line in log.read_text().splitlines()]
    device = [e for e in events if e[0] != 'start']
    assert device == [['go', 'a'], ['end', 'a'], ['go', 'c'], ['go', 'd'], ['go', 'e'],
                      ['end', 'e'], ['go', 'f'], ['end', 'f']]  # one after the other
    # prefetch 2: row a's turn came when a, b and c had started, not d
    assert events.index(['start', 'd']) > events.index(['go', 'a'])
    log.unlink()
    rows = cost.run_rows(plans[:2] + plans[4:], script=str(script), prefetch=0, time_limit_s=0)
    assert [r['status'] for r in rows] == ['not run: --time-limit-s', 'not run: S',
                                           'not run: --time-limit-s', 'not run: --time-limit-s']
    assert 'go' not in log.read_text()


def test_cost_selects_configs_by_name():
    cost = perfkit('cost')
    paths = cost.select_configs(['configs/coco/*.py'], archs=['vit'], sizes=['t'],
                                heads=['mask_rcnn'])
    assert [os.path.basename(p) for p in paths] == ['vit_t_p16_mask_rcnn.py']
    assert len(cost.select_configs(['configs/ade20k/*.py'], patch_sizes=[1])) == 12
    with pytest.raises(SystemExit, match="no config matches 'configs/nope/\\*.py'"):
        cost.select_configs(['configs/nope/*.py'])


def test_cost_run_order_b_then_t_tasks_in_turn_counted_rows_spread():
    order_plans = perfkit('cost').order_plans

    def plan(folder, name, counted=False):
        return (name, ['cost-row', f'configs/{folder}/{name}.py'] +
                (['--project-only', 'size S'] if counted else ['--wait-go']))
    plans = [plan('ade20k', 'vit_b_p16_linear'), plan('ade20k', 'vit_b_p8_linear'),
             plan('ade20k', 'vit_s_p8_linear', True), plan('ade20k', 'vit_t_p8_linear'),
             plan('coco', 'vit_b_p16_mask_rcnn'), plan('coco', 'vit_t_p16_mask_rcnn'),
             plan('toy', 'odd_name')]
    assert [name for name, _ in order_plans(plans)] == [
        'vit_b_p16_linear', 'vit_b_p16_mask_rcnn', 'vit_b_p8_linear', 'vit_s_p8_linear',
        'vit_t_p8_linear', 'vit_t_p16_mask_rcnn', 'odd_name']


# ------------------------------------------------------------------ check.py

def test_check_mamba_kernels_cpu_smoke(tmp_path, capsys):
    report = run('check.py', 'mamba-kernels', '--device', 'cpu', '--tiny', '--patch-sizes', 16, 8,
                 '--steps', 1, '--warmup', 0, '--out', tmp_path)
    assert report['parity'].startswith('skipped') and 'CUDA' in report['parity']
    assert [r['patch_size'] for r in report['benchmark']] == [16, 8]
    assert all(r['status'] == 'ok' and r['resolved_impl'] == 'torch' for r in report['benchmark'])
    for ext in ('json', 'csv', 'md'):
        assert (tmp_path / f'mamba_kernels.{ext}').is_file()
    assert 'parity: skipped' in capsys.readouterr().out


def test_check_fused_ce_cpu_smoke(tmp_path):
    # CPU: Triton's interpreter (conftest). Both fused rows agree with mmseg's path; all timed
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    rows, check = run('check.py', 'fused-ce', '--device', device, '--tiny', '--tune',
                      '--out', tmp_path)
    tune = perfkit('fused_ce').TUNE
    assert [r['path'] for r in rows] == ['mmseg', 'matmul', 'fused_ieee', 'fused_tf32'] + [
        'fused_tf32'] * len(tune)
    assert [(r['block_x'], r['block_c'], r['warps']) for r in rows[4:]] == list(tune)
    assert rows[0]['vs_mmseg'] == 1 and all(r['ms'] > 0 for r in rows)
    from mmpatch.models.losses import upsample_cross_entropy as fce
    assert (fce.BLOCK_X, fce.BLOCK_C, fce.NUM_WARPS) == (rows[3]['block_x'], rows[3]['block_c'],
                                                         rows[3]['warps'])  # restored
    for name, tolerance in (('fused_ieee', 1e-5), ('fused_tf32', 1e-3)):
        assert check[name]['loss_rel_err'] < tolerance and check[name]['acc_abs_err'] == 0
        assert check[name]['grad_max_abs_err'] < 10 * tolerance * check[name]['grad_max_abs']
    assert 'fused_tf32' in (tmp_path / 'fused_ce.md').read_text()
    assert 'loss_rel_err' in rows[2] and 'loss_rel_err' not in rows[0]  # measured for fused only
    assert 'loss_rel_err' not in rows[4] and rows[4]['tuned']  # not measured at tuned settings


def test_check_global_state_cpu_smoke(tmp_path):
    code = run('check.py', 'global-state', '--device', 'cpu', '--tiny', '--out', tmp_path)
    assert code == 0
    saved = json.loads((tmp_path / 'global_state.json').read_text())
    assert set(saved['diffs']) == set(perfkit('global_state').CASES) | {'all cases'}
    assert not any(saved['diffs'].values())
    [row] = saved['timing']
    assert row['timm_alone_img_s'] > 0 and row['timm_after_mmpatch_img_s'] > 0
    assert row['alone_pid'] != row['after_pid']  # alone: in a process of its own
    assert 'unchanged' in (tmp_path / 'global_state.md').read_text()


def test_check_seg_configs_cpu_smoke(tmp_path):
    config = ROOT / 'configs' / 'toy' / 'vit_t_p4_linear.py'
    run('check.py', 'seg-configs', config, '--device', 'cpu', '--warmup', 0, '--steps', 1,
        '--test-hw', 40, 48, '--out', tmp_path)
    with open(tmp_path / 'seg_configs.csv') as f:
        row, = csv.DictReader(f)
    assert {'train_s', 'predict_s', 'params_m'} <= set(row)
    assert row['config'] == 'vit_t_p4_linear' and row['test_mode'] == 'slide'
    assert float(row['train_s']) > 0 and float(row['predict_s']) > 0


# ------------------------------------------------------------------ gpu_run.sh

def test_gpu_run_parses_and_refuses_an_unknown_sub_command(tmp_path):
    import subprocess
    script = str(ANALYSIS / 'gpu_run.sh')
    assert subprocess.run(['bash', '-n', script]).returncode == 0
    done = subprocess.run(['bash', script, 'round1'], capture_output=True, text=True,
                          env=dict(os.environ, OUT=str(tmp_path)), cwd=ROOT)
    assert done.returncode == 2 and "usage: gpu_run.sh benchmark|mission|scale|toy-sweep|" \
        "train-iteration|cost [args] (got 'round1')" in done.stdout
    assert not any(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.parametrize('script', ['benchmark.py', 'check.py'])
def test_every_sub_command_prints_its_help(script, capsys):
    """Each sub-command's module imports and its parser formats (argparse expands '%' in help
    strings only when --help is asked for); no sub-command or an unknown one exits with the
    usage."""
    subcommands = runpy.run_path(str(ANALYSIS / script), run_name='tool_under_test')['SUBCOMMANDS']
    for name in subcommands:
        with pytest.raises(SystemExit) as exit_info:
            run(script, name, '--help')
        assert exit_info.value.code == 0, name
        assert 'usage:' in capsys.readouterr().out, name
    for argv in ([], ['no-such-command']):
        with pytest.raises(SystemExit) as exit_info:
            run(script, *argv)
        assert str(exit_info.value.code).startswith(f'usage: {script} {{'), argv
