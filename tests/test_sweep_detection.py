"""The sweep on detection (mmdet) cells: the task from default_scope, the neck role from the
config, COCO AP read from the test and the validation curve, the detection verdicts, a report
part per task, and one real tiny detection sweep."""
import csv
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time

import pytest

from mmpatch.apis.config import load_config
from mmpatch.engine.schedule import scale_schedule
from mmpatch.sweep import report
from mmpatch.sweep import stats as S
from mmpatch.sweep.cells import make_cells
from mmpatch.sweep.cli import keeps_per_image, parse_args, resolve_grid
from mmpatch.sweep.describe import describe_model, det_input_size, measure_model, task_of
from mmpatch.utils.errors import UserError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = osp.join(REPO, 'configs/toy/vit_t_p8_linear.py')
BASE = osp.join(REPO, 'configs/_base_')

# A Mask R-CNN smaller than configs/toy's (32 dims, 32 px images, fewer RoIs, one mask conv) on
# the toy COCO set; 200 iterations with validation every 100, so that --iters-scale 0.02 gives
# 4 iterations, validations at 2 and 4, a 2-iteration warm-up.
DET_CONFIG = '''_base_ = ['{base}/models/mask_rcnn_patch_vit_toy.py', '{base}/datasets/toy_coco.py',
          '{base}/schedules/toy_det_cpu.py']
data_root = '{data}/'
width = 32
model = dict(
    backbone=dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2), patch_size={p},
                  img_size=32, out_indices={out_indices}),
    neck=dict(in_channels={in_channels}, in_stride={p}, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=width),
                  bbox_head=dict(in_channels=width, fc_out_channels=64),
                  mask_roi_extractor=dict(out_channels=width),
                  mask_head=dict(in_channels=width, conv_out_channels=width, num_convs=1)),
    train_cfg=dict(rpn=dict(sampler=dict(num=32)), rpn_proposal=dict(nms_pre=100, max_per_img=50),
                   rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=100, max_per_img=50), rcnn=dict(max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(32, 32), keep_ratio=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=200, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=200))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=100, end=200)]
'''
NECKS = {'simple': dict(out_indices=-1, in_channels=32),
         'multidepth': dict(out_indices=(0, 1, 2, 3, 3), in_channels=[32] * 5)}


def write_det_config(folder, data, p, neck, name=None):
    """``{folder}/vit_t_p{p}_{neck}.py`` (or ``name``): the tiny detector with the simple
    pyramid (one input map) or the multidepth one (an input per level, from 4 depths)."""
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, name or f'vit_t_p{p}_{neck}.py')
    with open(path, 'w') as f:
        f.write(DET_CONFIG.format(base=BASE, data=data, p=p, **NECKS[neck]))
    return path


@pytest.fixture(scope='module')
def det_data(tmp_path_factory):
    """8 train + 4 val toy COCO images of 32 px."""
    from mmpatch.datasets.toy_scenes import write_toy_coco
    root = tmp_path_factory.mktemp('toy') / 'toy_coco_32'
    write_toy_coco(str(root), num_train=8, num_val=4, img_size=32, num_classes=6, seed=0)
    return str(root)


# ----------------------------------------------------------------------------- configs
def test_task_and_neck_role_come_from_the_config(tmp_path, det_data):
    simple = load_config(write_det_config(str(tmp_path), det_data, 8, 'simple'))
    multi = load_config(write_det_config(str(tmp_path), det_data, 4, 'multidepth'))
    assert task_of(simple) == 'det' and task_of(load_config(SEG_CONFIG)) == 'seg'
    assert describe_model(simple) == ('PatchViT (32d x 4 blocks)', 8, 'simple')
    assert describe_model(multi) == ('PatchViT (32d x 4 blocks)', 4, 'multidepth')
    assert describe_model(load_config(SEG_CONFIG))[1:] == (8, 'linear')
    # the content decides; a name that says the other role is refused
    misnamed = write_det_config(str(tmp_path), det_data, 8, 'multidepth', 'vit_t_p8_simple.py')
    with pytest.raises(UserError, match="file name says 'simple' but model.neck.in_channels"):
        describe_model(load_config(misnamed))
    # any other neck: the role cannot be told
    cfg = load_config(simple)
    cfg.model.neck = dict(type='FPN', in_channels=[32] * 4, out_channels=32, num_outs=5)
    with pytest.raises(UserError, match="from a PatchPyramidNeck's in_channels; .* 'FPN'"):
        describe_model(cfg)
    # detection keeps no per-image statistics; segmentation does
    assert not keeps_per_image(simple) and keeps_per_image(load_config(SEG_CONFIG))


def test_detector_size_and_flops_input(tmp_path, det_data):
    cfg = load_config(write_det_config(str(tmp_path), det_data, 8, 'simple'))
    assert det_input_size(cfg) == (32, 32)
    # mmdet's COCO test scale (1333, 800), padded to a multiple of 32
    assert det_input_size(load_config(osp.join(REPO, 'configs/coco/vit_t_p16_mask_rcnn.py'))) \
        == (800, 1344)
    params, gflops = measure_model(cfg, (32, 32))
    _, gflops_p4 = measure_model(load_config(write_det_config(str(tmp_path), det_data, 4,
                                                              'simple')), (32, 32))
    assert 0.1 < params < 1.0  # the whole detector, in millions
    assert 0 < gflops < gflops_p4  # backbone + neck: 4x the tokens at p4


def test_iters_scale_moves_the_detection_schedule():
    cfg = load_config(osp.join(REPO, 'configs/toy/vit_t_p8_mask_rcnn_toy.py'))
    scale_schedule(cfg, 0.1)
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (30, 30)
    assert cfg.default_hooks.checkpoint.interval == 30
    warm, poly = cfg.param_scheduler
    assert (warm.begin, warm.end, poly.begin, poly.end) == (0, 3, 3, 30)


def test_a_config_of_unknown_role_stops_the_sweep_before_any_cell(tmp_path, det_data):
    from mmpatch.sweep import cli
    bad = write_det_config(str(tmp_path / 'cfg'), det_data, 8, 'multidepth', 'vit_t_p8_simple.py')
    with pytest.raises(SystemExit, match="sweep.py: error: .*file name says 'simple'"):
        cli.main([bad, '--work-dir', str(tmp_path / 'sweep'), '--seeds', '0'])
    assert not (tmp_path / 'sweep' / 'vit_t_p8_simple').exists()


def test_grid_takes_necks(tmp_path):
    args = parse_args(['--config-dir', 'configs/toy_det', '--backbones', 'vit_t',
                       '--patch-sizes', '8', '4', '--necks', 'simple', 'multidepth'])
    configs, work_dir, toy = resolve_grid(args)
    assert configs == [f'configs/toy_det/vit_t_p{p}_{n}.py' for p in (8, 4)
                       for n in ('simple', 'multidepth')]
    assert work_dir == 'work_dirs/sweep_toy_det' and not toy
    assert parse_args(['--heads', 'simple']).heads == ['simple']


# ----------------------------------------------------------------------------- verdicts
def _det_rows(gap_at_p4, noise=(0.0, 0.4, -0.3)):
    """Three seeds; the simple pyramid gains 3 bbox AP per halving of p; the multidepth lead
    is 6 at p16, 4 at p8 and ``gap_at_p4`` at p4."""
    rows = []
    for seed, e in enumerate(noise):
        for p, simple, gap in ((16, 10.0, 6.0), (8, 13.0, 4.0), (4, 16.0, gap_at_p4)):
            for neck, ap in (('simple', simple + e), ('multidepth', simple + gap + 2 * e)):
                rows.append(dict(config=f'vit_t_p{p}_{neck}', seed=seed, task='det',
                                 backbone='ViT', patch_size=p, neck=neck, bbox_AP=ap,
                                 segm_AP=ap - 1, AP_small=ap / 2 if p < 16 else None,
                                 converged=True, last_quarter_gain=0.2, params_M=1.0,
                                 gflops=2.0, flops_input='32x32', train_img_s=5.0,
                                 peak_mem_MB=None))
    return rows


def test_detection_verdicts_on_known_numbers():
    claims = S.verdicts(_det_rows(gap_at_p4=2.0), task=S.DET)['ViT']
    a, b = claims['a'], claims['b']
    assert a.estimate == pytest.approx(3.0) and a.word == 'holds' and a.ps == (4, 8, 16)
    # the lead goes 6 -> 2 (p16 -> p4) on each seed, noise included: -4 exactly
    assert b.estimate == pytest.approx(-4.0 + 0.0) and b.ps == (4, 16)
    assert b.per_seed == {0: pytest.approx(-4.0), 1: pytest.approx(-4.0), 2: pytest.approx(-4.0)}
    assert S.format_verdict('ViT', a).startswith(
        'ViT: (a) simple-pyramid bbox AP gains +3.0 per halving of p [95% CI ')
    assert S.format_verdict('ViT', a).endswith('], 3 seeds: holds')
    # a growing lead reverses (b)
    b_grows = S.verdicts(_det_rows(gap_at_p4=9.0, noise=(0.0, 0.5, -0.2)), task=S.DET)['ViT']['b']
    assert b_grows.word == 'reversed' and b_grows.estimate > 0
    line = S.format_verdict('ViT', S.Claim('b', -4.04, -5.5, -2.6, 1.4, 0.6, 0.95, 'holds', 3,
                                           ps=(4, 16), task=S.DET))
    assert line == ('ViT: (b) multidepth - simple gap in bbox AP changes by -4.0 from p=16 to '
                    'p=4 [95% CI -5.5, -2.6], 3 seeds: holds')


def test_detection_ci_and_missing_cells():
    rows = _det_rows(gap_at_p4=2.0, noise=(0.0, 1.0, 2.0))
    cell = next(c for c in S.summarise(rows, task=S.DET)['cells']
                if (c['patch_size'], c['neck']) == (8, 'simple'))
    ref = S.mean_ci([13.0, 14.0, 15.0])
    assert (cell['mean'], cell['half']) == (pytest.approx(ref.mean), pytest.approx(ref.half))
    # seed 2 without its multidepth p4 cell: left out of (b), kept in (a)
    rows = [r for r in rows if not (r['seed'] == 2 and r['patch_size'] == 4
                                    and r['neck'] == 'multidepth')]
    claims = S.verdicts(rows, task=S.DET)['ViT']
    assert claims['a'].n_seeds == 3 and claims['b'].seeds_dropped == (2,)
    # one seed: an estimate, no interval
    one = S.verdicts([r for r in rows if r['seed'] == 0], task=S.DET)['ViT']['a']
    assert one.n_seeds == 1 and math.isnan(one.lo) and one.word == 'inconclusive'
    # rows of the other task are refused, not mixed in
    with pytest.raises(ValueError, match="a 'det' row .* among the 'seg' rows"):
        S.verdicts(rows)


def test_detection_report_tables_and_plot(tmp_path):
    rows = _det_rows(gap_at_p4=2.0)
    text = report.markdown_report(rows)
    assert text.startswith('## Verdicts') and '# Detection' not in text
    assert '- ViT: (a) simple-pyramid bbox AP gains +3.0 per halving of p' in text
    assert '- ViT: 0 of 18 cells not converged (last-quarter gain > 1 bbox AP)' in text
    assert ('| patch | seeds | simple bbox AP | multidepth bbox AP | gap (multidepth - simple) '
            '| segm AP (simple / multi) | AP_small (simple / multi) |') in text
    row16 = next(line for line in text.splitlines() if line.startswith('| 16 |'))
    assert row16.split(' | ')[6] == '- / -'  # no small objects at p16: no AP_small
    assert 'backbone + neck forward on one 32x32 input' in text and 'majority' not in text
    # validated only at the end of training: convergence unknown, and the line says so
    unknown = report.markdown_report([dict(r, converged=None) for r in rows])
    assert ('- ViT: 0 of 18 cells not converged (last-quarter gain > 1 bbox AP); convergence '
            'unknown for 18 (no validation during training before its last quarter)') in unknown
    report.write_csv(rows, tmp_path / 'r.csv')
    with open(tmp_path / 'r.csv') as f:
        header = next(csv.reader(f))
    assert header[:6] == ['config', 'seed', 'backbone', 'patch_size', 'neck', 'bbox_AP']
    assert 'task' not in header and 'mIoU' not in header
    report.plot(rows, tmp_path / 'r.png', task=S.DET)
    assert osp.getsize(tmp_path / 'r.png') > 1000
    # a further key in the rows is a further column, after the task's own
    report.write_csv([dict(r, cost_h=1.5) for r in rows], tmp_path / 'r2.csv')
    with open(tmp_path / 'r2.csv') as f:
        assert next(csv.reader(f))[-1] == 'cost_h'


# ----------------------------------------------------------------------------- collect
STAMP = '20260101_000000'


def fake_finished_cell(cell, scores, curve, task='det'):
    """The files mmengine and the sweep leave in a finished cell: training's scalars.json
    (train records every 2 iterations, one validation record per ``curve`` point), the test's
    metrics json, done.json. ``scores``: metric name -> value (CocoMetric's 0-1 for det)."""
    prefix = 'coco/' if task == 'det' else ''
    vis = osp.join(cell.work_dir, STAMP, 'vis_data')
    os.makedirs(vis)
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        for it, value in curve:
            for i in (it - 1, it):
                f.write(json.dumps(dict(lr=1e-3, loss=1.0, time=0.5, iter=i, step=i)) + '\n')
            f.write(json.dumps({f'{prefix}{"bbox_mAP" if task == "det" else "mIoU"}': value,
                                'time': 9.0, 'step': it}) + '\n')
    test = osp.join(cell.work_dir, 'test', STAMP)
    os.makedirs(test)
    with open(osp.join(test, f'{STAMP}.json'), 'w') as f:
        json.dump({f'{prefix}{k}': v for k, v in scores.items()}, f)
    with open(cell.done_file, 'w') as f:
        json.dump(dict(config=cell.config, seed=cell.seed, train_seconds=12.0), f)


def test_collect_reads_a_finished_detection_cell(tmp_path, det_data):
    configs = [write_det_config(str(tmp_path / 'cfg'), det_data, 8, n)
               for n in ('simple', 'multidepth')]
    simple, multi = make_cells(configs, [0], str(tmp_path / 'sweep'))
    coco = {'bbox_mAP': 0.125, 'bbox_mAP_50': 0.3, 'bbox_mAP_s': -1.0, 'segm_mAP': 0.1}
    fake_finished_cell(simple, coco, [(100, 0.05), (200, 0.08), (300, 0.1), (400, 0.125)])
    fake_finished_cell(multi, dict(coco, bbox_mAP=0.2), [(200, 0.1), (400, 0.2)])
    write = report.ReportWriter([simple, multi], str(tmp_path / 'sweep'), baseline=True)
    text = write()
    rows = {r['neck']: r for r in report.collect([simple, multi], sizes=write.sizes)}
    r = rows['simple']
    assert (r['task'], r['backbone'], r['patch_size']) == ('det', 'PatchViT (32d x 4 blocks)', 8)
    assert (r['bbox_AP'], r['bbox_AP50'], r['segm_AP']) == (12.5, 30.0, 10.0)
    assert r['AP_small'] is None  # COCO's -1: no small object
    # the curve of bbox AP in points; 3/4 of 400 = 300: gained 2.5 > 1 point, not converged
    assert r['curve'] == '100:5.00 200:8.00 300:10.00 400:12.50'
    assert r['last_quarter_gain'] == 2.5 and r['converged'] is False
    assert rows['multidepth']['last_quarter_gain'] == 10.0
    assert r['train_img_s'] == 4.0 and r['train_s'] == 12.0  # batch 2 / 0.5 s
    assert r['flops_input'] == '32x32' and r['gflops'] > 0
    # one task: results.csv / .png, no majority-class baseline (segmentation only)
    assert [osp.basename(p) for _, p in write.files] == ['results.csv', 'results.md', 'results.png']
    assert write.baseline is None and 'Sanity' not in text
    assert '| 8 | 1 | 12.50 (n=1) | 20.00 (n=1) | 7.50 (n=1) |' in text
    assert 'Not converged (bbox AP gained over the last quarter of training): ' \
           'vit_t_p8_simple/seed0 (+2.5), vit_t_p8_multidepth/seed0 (+10.0).' in text


def test_a_sweep_of_both_tasks_reports_each(tmp_path, det_data):
    det = write_det_config(str(tmp_path / 'cfg'), det_data, 8, 'simple')
    seg_cell, det_cell = make_cells([SEG_CONFIG, det], [0], str(tmp_path / 'sweep'))
    fake_finished_cell(seg_cell, dict(mIoU=41.5, aAcc=80.0), [(2, 30.0), (4, 41.5)], task='seg')
    fake_finished_cell(det_cell, dict(bbox_mAP=0.1, segm_mAP=0.05), [(2, 0.05), (4, 0.1)])
    write = report.ReportWriter([seg_cell, det_cell], str(tmp_path / 'sweep'), baseline=False)
    text = write()
    assert [osp.basename(p) for _, p in write.files] == [
        'results_seg.csv', 'results_det.csv', 'results.md', 'results_seg.png', 'results_det.png']
    assert all(osp.getsize(p) > 0 for _, p in write.files)
    seg_part, det_part = text.split('# Detection')
    assert seg_part.startswith('# Segmentation') and '| linear mIoU | UperNet mIoU |' in seg_part
    assert '(a) linear head gains ? mIoU' in seg_part and 'bbox AP' not in seg_part
    assert '(a) simple-pyramid bbox AP gains ?' in det_part and '| 8 | 1 | 10.00 (n=1) | - |' \
        in det_part
    with open(write.csv_paths['seg']) as f:
        assert next(csv.DictReader(f))['mIoU'] == '41.5'


# ----------------------------------------------------------------------------- end to end
def test_a_tiny_detection_sweep_end_to_end(tmp_path, det_data):
    """Two cells (simple and multidepth necks, p8, seed 0), 4 iterations each, through
    tools/sweep.py's grid options."""
    for neck in ('simple', 'multidepth'):
        write_det_config(str(tmp_path / 'toy_det'), det_data, 8, neck)
    work_dir = tmp_path / 'sweep'
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, 'tools/sweep.py', '--config-dir', str(tmp_path / 'toy_det'),
         '--backbones', 'vit_t', '--patch-sizes', '8', '--heads', 'simple', 'multidepth',
         '--seeds', '0', '--iters-scale', '0.02', '--work-dir', str(work_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f'\n{proc.stdout[proc.stdout.index("## Verdicts"):]}\n(end to end: {elapsed:.0f} s)')
    assert '[2/2] vit_t_p8_multidepth/seed0: bbox AP ' in proc.stdout
    assert '| 8 | 1 |' in proc.stdout and 'results: ' + str(work_dir / 'results.csv') in proc.stdout
    with open(work_dir / 'results.csv') as f:
        rows = {r['neck']: r for r in csv.DictReader(f)}
    assert set(rows) == {'simple', 'multidepth'}
    for neck, row in rows.items():
        cell = work_dir / f'vit_t_p8_{neck}' / 'seed0'
        assert [int(p.split(':')[0]) for p in row['curve'].split()] == [2, 4]  # --iters-scale
        assert row['converged'] in ('True', 'False') and row['bbox_AP'] != ''
        assert not (cell / 'test' / 'per_image.npz').exists()  # per-image: segmentation only
    assert float(rows['simple']['params_M']) > 0 and osp.getsize(work_dir / 'results.png') > 1000
