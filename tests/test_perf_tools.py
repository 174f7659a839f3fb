"""FLOP counter vs analytic formulas, SDPA kernel choice, PatchViT speed flags, benchmark smoke tests."""
import copy
import json
import math
import os
import runpy
import types
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mmpatch.models.backbones.patch_vit as patch_vit_module
from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.utils.sdpa_backend import choose_sdpa_backends, resolve_sdpa_backends
from mmpatch.utils.flops import count_flops_by_op, split_attention_flops

ROOT = Path(__file__).resolve().parents[1]
VIT = dict(embed_dims=32, num_layers=2, num_heads=2, mlp_ratio=4.)
MAMBA = dict(embed_dims=32, num_layers=2, headdim=16, d_state=8, chunk_size=8)


def load_tool(path):
    return runpy.run_path(str(ROOT / path))


# ------------------------------------------------------------------ FLOPs

def vit_forward_flops(arch, patch, img, in_chans=3):
    """Matmul FLOPs (2 x multiply-adds) of a ViT forward: patch conv, qkv, proj, MLP, attention."""
    c, n = arch['embed_dims'], math.ceil(img / patch) ** 2
    t = n + 1  # class token
    hidden = int(c * arch['mlp_ratio'])
    per_block = 2 * t * c * 3 * c + 2 * t * c * c + 2 * 2 * t * c * hidden + 4 * t * t * c
    return 2 * n * c * in_chans * patch ** 2 + arch['num_layers'] * per_block, \
        arch['num_layers'] * 4 * t * t * c


def mamba_forward_flops(arch, patch, img, in_chans=3, expand=2, d_conv=4, mlp_ratio=2.5, ngroups=1):
    """Matmul FLOPs of an Adventurer forward with the chunked SSD scan (chunk Q, as the kernel)."""
    c, n = arch['embed_dims'], math.ceil(img / patch) ** 2
    p, d_state, q = arch['headdim'], arch['d_state'], arch['chunk_size']
    di = expand * c
    h, g = di // p, ngroups
    t = n + 1  # class token
    seq = t + 1  # the mixer also sees the mean token
    chunks = math.ceil(seq / q)
    padded = chunks * q
    conv_dim = di + 2 * g * d_state
    assert chunks <= q, 'formula covers one level of the chunk-state scan'
    ssd = (2 * chunks * g * q * q * d_state      # C_t . B_s inside each chunk
           + 2 * h * chunks * q * q * p          # masked (Q x Q) product with x dt
           + 2 * h * padded * p * d_state        # each chunk's state
           + 2 * h * chunks * chunks * p * d_state  # states passed across chunks
           + 2 * h * padded * p * d_state)       # outputs from the entering states
    hidden = int(c * mlp_ratio)
    per_block = (2 * seq * c * (2 * di + 2 * g * d_state + h)       # in_proj
                 + 2 * conv_dim * (seq + d_conv - 1) * d_conv       # depthwise causal conv
                 + ssd + 2 * seq * di * c                           # out_proj
                 + 3 * 2 * t * c * hidden)                          # SwiGLU
    return 2 * n * c * in_chans * patch ** 2 + arch['num_layers'] * per_block


@pytest.mark.parametrize('patch,img', [(8, 32), (4, 24)])
def test_vit_flop_count_matches_formula(patch, img):
    counts = count_flops_by_op(PatchViT(arch=VIT, patch_size=patch, img_size=img), (1, 3, img, img))
    attention, other = split_attention_flops(counts)
    total, want_attention = vit_forward_flops(VIT, patch, img)
    assert attention > 0, f'SDPA was not counted: {counts}'
    assert abs(attention + other - total) / total < 0.01
    assert abs(attention - want_attention) / want_attention < 0.01


def test_mamba_flop_count_includes_ssd_scan():
    model = PatchMamba(arch=MAMBA, patch_size=4, img_size=24)
    model.layers[0].mixer.torch_chunk_size = 3  # must be set to the kernel's chunk while counting
    counts = count_flops_by_op(model, (1, 3, 24, 24))
    want = mamba_forward_flops(MAMBA, 4, 24)
    assert abs(sum(counts.values()) - want) / want < 0.01, counts
    assert model.layers[0].mixer.torch_chunk_size == 3 and model.layers[0].mixer.impl == 'auto'
    assert counts['aten.bmm'] > 0  # the scan's einsums


def test_get_flops_cli(tmp_path, capsys):
    result = load_tool('tools/analysis/get_flops.py')['main'](
        ['--backbone', 'PatchViT', '--arch', 'tiny', '--patch-size', '16', '--shape', '64', '64'])
    total, _ = vit_forward_flops(dict(embed_dims=192, num_layers=12, mlp_ratio=4.), 16, 64)
    assert abs(result['total_flops'] - total) / total < 0.01
    assert 'scaled_dot_product' in capsys.readouterr().out


# ------------------------------------------------------------------ SDPA choice

@pytest.mark.parametrize('args,first', [
    (('cuda', torch.bfloat16, 64, (9, 0)), 'cudnn'),
    (('cuda', torch.float16, 128, (9, 0)), 'cudnn'),
    (('cuda', torch.bfloat16, 64, (8, 0)), 'flash'),
    (('cuda', torch.bfloat16, 256, (9, 0)), 'efficient'),
    (('cuda', torch.float32, 64, (9, 0)), 'efficient'),
    (('cuda', torch.bfloat16, 64, (7, 5)), 'efficient'),
    (('cpu', torch.float32, 64, None), 'flash'),
])
def test_choose_sdpa_backends(args, first):
    order = choose_sdpa_backends(*args)
    assert order[0] == first and order[-1] == 'math' and len(set(order)) == len(order)


def test_resolve_rejects_unknown_backend():
    with pytest.raises(ValueError, match='attn_backend'):
        resolve_sdpa_backends('fast', torch.zeros(1), 8)
    with pytest.raises(ValueError, match='attn_backend'):
        PatchViT(arch=VIT, patch_size=8, img_size=32, attn_backend='fa3')


def _outputs_and_grads(model, x):
    model.zero_grad()
    out = model(x)[0]
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize('backend', ['auto', 'default', 'flash'])
def test_attention_backends_match_math(backend):
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=4, img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    model.attn_backend = 'math'
    ref_out, ref_grads = _outputs_and_grads(model, x)
    model.attn_backend = backend
    out, grads = _outputs_and_grads(model, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-6)


def test_strict_backend_that_cannot_run_raises():
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, attn_backend='cudnn')
    with pytest.raises(RuntimeError, match='backend'):
        model(torch.randn(1, 3, 32, 32))


# ------------------------------------------------------------------ checkpointing, compile

class _CountAttention(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.forward_calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in patch_vit_module._ATTENTION_OPS:
            self.forward_calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('save_attention,calls_per_block', [(True, 1), (False, 2)])
def test_selective_checkpointing_keeps_attention(save_attention, calls_per_block):
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=4, img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    ref_out, ref_grads = _outputs_and_grads(model, x)
    model.with_cp, model.cp_save_attention = True, save_attention
    with _CountAttention() as counter:
        out, grads = _outputs_and_grads(model, x)
    assert counter.forward_calls == calls_per_block * VIT['num_layers']
    torch.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def test_compile_blocks_runs_eagerly_on_cpu(monkeypatch):
    def no_compile():
        raise AssertionError('blocks must not be compiled for CPU inputs')
    monkeypatch.setattr(patch_vit_module, 'compiled_block_call', no_compile)
    torch.manual_seed(0)
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=True).train()
    x = torch.randn(1, 3, 32, 32)
    out = model(x)[0]
    model.compile_blocks = False
    torch.testing.assert_close(model(x)[0], out)


def test_compile_blocks_takes_a_compile_mode(monkeypatch):
    modes = []
    monkeypatch.setattr(patch_vit_module, 'compiled_block_call', lambda mode: modes.append(mode))
    on_gpu = types.SimpleNamespace(is_cuda=True)  # the choice only reads x.is_cuda
    for flag in (True, 'reduce-overhead'):
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=flag).train()._block_call(on_gpu)
    assert modes == ['default', 'reduce-overhead']
    with pytest.raises(ValueError, match="compile_blocks must be True, False or a torch.compile "
                                         "mode of .*'reduce-overhead'.*, got 'fast'"):
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks='fast')
    with pytest.raises(ValueError, match='got 1'):  # a flag, not an int
        PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=1)
    for mode in ('reduce-overhead', 'max-autotune'):  # the modes with CUDA graphs
        with pytest.raises(ValueError, match=f"'{mode}' .* not supported with with_cp"):
            PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=mode, with_cp=True)
    PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks='max-autotune-no-cudagraphs',
             with_cp=True)


# ------------------------------------------------------------------ tools

def test_benchmark_cpu_smoke(tmp_path):
    # two rows (each in a fresh process: seconds of imports each), the kernels in a third
    model_rows, sdpa_rows = load_tool('tools/analysis/benchmark.py')['main'](
        ['--device', 'cpu', '--tiny', '--backbones', 'PatchViT', 'timm', '--patch-sizes', '16',
         '--out', str(tmp_path)])
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
    # The report step alone rebuilds the Markdown and plot from the CSVs.
    (tmp_path / 'benchmark.md').unlink()
    load_tool('tools/analysis/benchmark.py')['main'](
        ['--sections', 'report', '--out', str(tmp_path)])
    assert 'alone in a fresh process' in (tmp_path / 'benchmark.md').read_text()


@pytest.mark.parametrize('backbone,patch,batch', [
    ('mmseg', 16, 2), ('PatchMamba', 16, 2), ('PatchViT', 4, 1), ('PatchMamba', 4, 1)])
def test_benchmark_row_subcommand(tmp_path, capsys, backbone, patch, batch):
    # what each row's process runs (here in the test's process, which is cheaper)
    from mmpatch.utils.benchmark import RESULT_MARK
    row = load_tool('tools/analysis/benchmark.py')['main'](
        ['row', '--backbone', backbone, '--patch-size', str(patch), '--batch', str(batch),
         '--device', 'cpu', '--tiny', '--out', str(tmp_path)])
    assert row['status'] == 'ok' and row['images_per_s'] > 0 and row['pid'] == os.getpid()
    assert row['with_cp'] == (patch == 4)  # above the tiny grid's cp_from_tokens
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith(RESULT_MARK)]
    assert json.loads(line[len(RESULT_MARK):])['row'] == row


def test_benchmark_runs_the_anchor_first_and_its_repeat_last():
    tool = load_tool('tools/analysis/benchmark.py')
    grid = [(16, 16, ('PatchViT', 'timm', 'PatchMamba')), (8, 4, ('PatchViT', 'timm'))]
    assert tool['planned_rows'](grid, anchor_repeat=True) == [
        ('timm', 16, 16, None), ('PatchViT', 16, 16, None), ('PatchMamba', 16, 16, None),
        ('PatchViT', 8, 4, None), ('timm', 8, 4, None), ('timm', 16, 16, 'anchor-repeat')]
    assert tool['planned_rows'](grid, patch_sizes=[8], anchor_repeat=True) == [
        ('timm', 8, 4, None), ('PatchViT', 8, 4, None), ('timm', 8, 4, 'anchor-repeat')]
    assert tool['planned_rows'](grid, backbones=['PatchViT'], anchor_repeat=True) == [
        ('PatchViT', 16, 16, None), ('PatchViT', 8, 4, None)]  # no timm: no anchor


def test_benchmark_anchor_check_and_ratios_use_timm_alone():
    tool = load_tool('tools/analysis/benchmark.py')

    def row(backbone, img_s, role=None):
        return dict(backbone=backbone, patch_size=16, batch=16, status='ok', images_per_s=img_s,
                    **(dict(role=role) if role else {}))
    rows = tool['add_ratios']([row('timm', 400.), row('PatchViT', 500.),
                               row('timm', 410., 'anchor-repeat')])
    assert rows[1]['speed_vs_timm'] == 500. / 400.  # the grid's timm row, not the repeat
    assert 'speed_vs_timm' not in rows[2]
    assert tool['anchor_check'](rows) == \
        'anchor check: timm p16 400 vs 410 img/s, within 2.5%: ok'
    rows[2]['images_per_s'] = 420.
    assert tool['anchor_check'](rows).endswith('within 5.0%: FAILED (>3%)')
    assert tool['anchor_check'](rows[:2]) is None


def test_run_fresh_process_reports_a_failed_child(tmp_path):
    from mmpatch.utils.benchmark import run_fresh_process
    script = tmp_path / 'child.py'
    script.write_text('import sys\nprint("about to fail")\nsys.exit(3)\n')
    assert run_fresh_process(str(script), []) == dict(
        status='error: exit code 3: about to fail')
    script.write_text('import time\ntime.sleep(30)\n')
    assert run_fresh_process(str(script), [], timeout=1)['status'] == 'error: killed after 1 s'


def test_seg_iteration_cpu_smoke(tmp_path, monkeypatch):
    from mmpatch.fast import StackedSegDataPreProcessor
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)  # fused row: the matmul path on CPU
    batches_seen = []  # by the stacked preprocessor: only its rows' stacked batches
    real_forward = StackedSegDataPreProcessor.forward
    monkeypatch.setattr(StackedSegDataPreProcessor, 'forward', lambda self, data, training=False: (
        batches_seen.append(torch.is_tensor(data['inputs'])) or real_forward(self, data, training)))
    rows = load_tool('tools/analysis/bench_seg_iteration.py')['main'](
        ['--device', 'cpu', '--tiny', '--profile', '--timeline', '--end-to-end-workers', '1',
         '--out', str(tmp_path)])
    assert batches_seen and all(batches_seen)
    assert [r['what'] for r in rows] == ['loader', 'backbone', 'segmentor', 'segmentor_mmseg_loss',
                                        'segmentor_fused_loss', 'segmentor_batch_on_gpu',
                                        'segmentor_one_group', 'segmentor_stacked',
                                        'segmentor_stacked_fused',
                                        'segmentor_stacked_fused_prefetch',
                                        'segmentor_stacked_fused_prefetch_host_log',
                                        'end_to_end', 'end_to_end_stacked',
                                        'end_to_end_stacked_fused',
                                        'end_to_end_stacked_fused_prefetch',
                                        'end_to_end_stacked_fused_prefetch_host_log',
                                        'end_to_end_file_system', 'end_to_end_w1']
    assert [r['workers'] for r in rows[-7:]] == [0, 0, 0, 0, 0, 0, 1]
    timeline = (tmp_path / 'seg_iteration_timeline.md').read_text()
    for what, phases in (('backbone', ('forward', 'backward', 'optimizer')),
                         ('segmentor_stacked_fused', ('preprocess', 'forward_and_loss',
                                                      'parse_losses', 'backward', 'optimizer',
                                                      'loss_read'))):
        lines = [line.split('|')[2].strip() for line in timeline.splitlines()
                 if line.startswith(f'| {what} |')]
        assert lines == list(phases) + ['total'], lines
    assert all(r['images_per_s'] > 0 for r in rows)
    assert (tmp_path / 'seg_iteration.csv').stat().st_size > 0
    profile = (tmp_path / 'seg_iteration_profile.txt').read_text()
    assert '3 segmentor steps' in profile and 'upsample_bilinear2d_backward' not in profile
    mmseg = (tmp_path / 'seg_iteration_profile_mmseg_loss.txt').read_text()
    assert '3 segmentor_mmseg_loss steps' in mmseg and 'upsample_bilinear2d_backward' in mmseg
    fused = (tmp_path / 'seg_iteration_profile_fused_loss.txt').read_text()
    assert '3 segmentor_fused_loss steps' in fused and 'upsample_bilinear2d' not in fused
    end_to_end = (tmp_path / 'seg_iteration_profile_end_to_end.txt').read_text()
    assert '3 end_to_end steps' in end_to_end and 'sorted by self_cpu_time_total' in end_to_end
    python = (tmp_path / 'seg_iteration_profile_python.txt').read_text()
    assert '5 end_to_end steps, sorted by tottime' in python and 'train_step' in python
    assert '5 end_to_end_stacked steps' in python
    stacked = (tmp_path / 'seg_iteration_profile_end_to_end_stacked.txt').read_text()
    assert '3 end_to_end_stacked steps' in stacked
    assert '3 backbone steps' in (tmp_path / 'seg_iteration_profile_backbone.txt').read_text()


def test_seg_iteration_rows_filter(tmp_path):
    rows = load_tool('tools/analysis/bench_seg_iteration.py')['main'](
        ['--device', 'cpu', '--tiny', '--rows', 'segmentor_stacked', 'end_to_end_stacked_fused',
         '--out', str(tmp_path)])
    assert [r['what'] for r in rows] == ['loader', 'backbone', 'segmentor_stacked',
                                        'end_to_end_stacked_fused']


def test_seg_iteration_host_log_rows_take_the_segmentors_step(monkeypatch):
    tool = load_tool('tools/analysis/bench_seg_iteration.py')
    calls = []
    monkeypatch.setitem(tool['segmentor_step'].__globals__, 'train_step_host_log',
                        lambda model, data, optim_wrapper: calls.append(data) or
                        dict(loss=torch.tensor(1.0)))
    model = types.SimpleNamespace(decode_head=types.SimpleNamespace())
    tool['segmentor_step'](model, None, lambda: 'batch', 'preprocessor', host_log=True)()
    assert calls == ['batch'] and model.data_preprocessor == 'preprocessor'


def test_timeline_phases_are_mmengines_train_step():
    # the timeline times BaseModel.train_step phase by phase: same update, same loss
    tool = load_tool('tools/analysis/bench_seg_iteration.py')
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = tool['segmentor_cfg'](tool['TINY']['arch'], 8, 32, compile_blocks=False)
    items = [dict(inputs=torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8),
                  data_samples=_seg_sample(torch.randint(0, 150, (1, 32, 32)))) for _ in range(2)]
    params, logs = [], []
    for run in ('train_step', 'phases'):
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.init_weights()
        model.train()
        optim_wrapper = build_optim_wrapper(model, tool['schedule_optim_cfg'](False))
        batch = tool['pseudo_collate'](copy.deepcopy(items))
        if run == 'train_step':
            logs.append(model.train_step(batch, optim_wrapper))
        else:
            phases = []
            logs.append(tool['train_step_phases'](model, optim_wrapper, batch, phases.append))
            assert phases == ['preprocess', 'forward_and_loss', 'parse_losses', 'backward',
                              'optimizer', 'loss_read']
        params.append([p.detach().clone() for p in model.parameters()])
    for run_params in params[1:]:
        for a, b in zip(params[0], run_params, strict=True):
            torch.testing.assert_close(a, b)
    assert logs[1].keys() == logs[0].keys()
    for key in logs[1]:
        torch.testing.assert_close(logs[1][key], logs[0][key])
    assert not all(torch.equal(a, b) for a, b in zip(params[0], _initial_params(cfg)))  # trained


def _seg_sample(label):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    sample.set_metainfo(dict(img_shape=tuple(label.shape[-2:]), ori_shape=tuple(label.shape[-2:])))
    return sample


def _initial_params(cfg):
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return [p.detach().clone() for p in model.parameters()]


def test_seg_iteration_broken_loss_path_costs_only_its_row(tmp_path, monkeypatch):
    from mmpatch.models.heads.linear_head import LinearHead
    real = LinearHead._fused_loss

    def broken(self, *args):
        if self.fast_loss == 'fused':
            raise RuntimeError('kernel failed to compile\nsecond line')
        return real(self, *args)
    monkeypatch.setattr(LinearHead, '_fused_loss', broken)
    rows = load_tool('tools/analysis/bench_seg_iteration.py')['main'](
        ['--device', 'cpu', '--tiny', '--profile', '--timeline', '--out', str(tmp_path)])
    by_what = {r['what']: r for r in rows}
    for what in ('segmentor_fused_loss', 'segmentor_stacked_fused', 'end_to_end_stacked_fused'):
        assert by_what[what]['status'] == 'error: RuntimeError: kernel failed to compile'
        assert 'ms_per_iter' not in by_what[what]
    assert 'segmentor_stacked_fused' not in (tmp_path / 'seg_iteration_timeline.md').read_text()
    assert by_what['end_to_end']['ms_per_iter'] > 0 and by_what['segmentor']['ms_per_iter'] > 0
    assert not (tmp_path / 'seg_iteration_profile_fused_loss.txt').exists()
    assert 'kernel failed to compile' in (tmp_path / 'seg_iteration.md').read_text()


def test_check_fused_ce_cpu_smoke(tmp_path):
    # CPU: Triton's interpreter (conftest). Both fused rows agree with mmseg's path; all timed
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    tool = load_tool('tools/analysis/check_fused_ce.py')
    rows, check = tool['main'](['--device', device, '--tiny', '--tune', '--out', str(tmp_path)])
    assert [r['path'] for r in rows] == ['mmseg', 'matmul', 'fused_ieee', 'fused_tf32'] + [
        'fused_tf32'] * len(tool['TUNE'])
    assert [(r['block_x'], r['block_c'], r['warps']) for r in rows[4:]] == list(tool['TUNE'])
    assert rows[0]['vs_mmseg'] == 1 and all(r['ms'] > 0 for r in rows)
    from mmpatch.models.utils import upsample_cross_entropy as fce
    assert (fce.BLOCK_X, fce.BLOCK_C, fce.NUM_WARPS) == (rows[3]['block_x'], rows[3]['block_c'],
                                                         rows[3]['warps'])  # restored
    for name, tolerance in (('fused_ieee', 1e-5), ('fused_tf32', 1e-3)):
        assert check[name]['loss_rel_err'] < tolerance and check[name]['acc_abs_err'] == 0
        assert check[name]['grad_max_abs_err'] < 10 * tolerance * check[name]['grad_max_abs']
    assert 'fused_tf32' in (tmp_path / 'fused_ce.md').read_text()
    assert 'loss_rel_err' in rows[2] and 'loss_rel_err' not in rows[0]  # measured for fused only
    assert 'loss_rel_err' not in rows[4] and rows[4]['tuned']  # not measured at tuned settings


def test_gpu_gaps_names_the_host_frames_open_when_the_gpu_went_idle():
    from mmpatch.utils.gpu_trace import gpu_gaps

    def op(cat, name, ts, dur, tid=1):
        return dict(ph='X', cat=cat, name=name, ts=ts, dur=dur, tid=tid)
    events = [op('kernel', 'gemm', 100, 50), op('gpu_memcpy', 'Memcpy HtoD', 140, 30),  # overlap
              op('kernel', 'loss', 400, 10), op('kernel', 'adam', 430, 10),  # 20 us: not a gap
              op('gpu_memset', 'Memset', 1000, 5),
              op('python_function', 'train_step', 0, 2000),
              op('python_function', 'preprocess', 160, 260),
              op('python_function', 'item', 441, 500),  # opens after the second gap began
              op('cpu_op', 'aten::copy_', 170, 10),
              op('python_function', 'pin_memory', 100, 900, tid=2)]  # another thread
    gaps, idle = gpu_gaps(events, min_us=50)
    assert [(g['start_us'], g['gap_us'], g['next_gpu_op']) for g in gaps] == [
        (340, 560, 'Memset'), (70, 230, 'loss')]  # longest first, from the first GPU op
    assert gaps[1]['host'] == ['train_step', 'preprocess']
    assert gaps[0]['host'] == ['train_step']
    assert idle == 790
    assert gpu_gaps([], 50) == ([], 0)
