"""Crash safety and bad input: atomic checkpoints, kill + resume, and one-line errors with fixes."""
import builtins
import glob
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time
import types
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import mmpatch  # noqa: F401  (registers hooks, datasets, models)
from mmpatch.datasets import ToySegDataset
from mmpatch.datasets.sample_checks import DataError, original_message
from mmpatch.datasets.toy_scenes import coco_class_names
from mmpatch.apis import errors
from mmpatch.apis import test as apis_test
from mmpatch.apis import train as apis_train
from mmpatch.apis import train_options
from mmpatch.engine.atomic_checkpoint import is_complete_checkpoint, latest_complete_checkpoint
from mmpatch.engine.finite_loss_hook import NonFiniteLossError
from mmpatch.engine.fsdp_wrap_policy import patch_block_wrap_policy
from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.layers import mamba2_mixer

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VIT = osp.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py')


# ----------------------------------------------------------------------------- helpers
def toy_options(root, max_iters, interval, *extra):
    """--cfg-options for a short deterministic toy run on ``root``."""
    return ['--cfg-options', *[f'{n}_dataloader.dataset.data_root={root}' for n in ('train', 'val', 'test')],
            f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            f'default_hooks.checkpoint.interval={interval}', 'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=4', 'randomness.deterministic=True', *extra]


def run_cli(main, argv, capsys, prog='train.py'):
    """Exit code and stderr lines of ``tools/<prog>`` run in-process."""
    with pytest.raises(SystemExit) as exit_info:
        errors.run(lambda: main(argv), prog)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def copy_toy(toy_seg_root, tmp_path):
    root = tmp_path / 'toy_seg'
    shutil.copytree(toy_seg_root, root)
    return root


class TinyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, x, y, mode='loss'):
        out = self.fc(x)
        return dict(loss=((out - y) ** 2).mean()) if mode == 'loss' else out


class TinyData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(4, generator=g), y=torch.randn(1, generator=g))


def tiny_runner(work_dir, name, hook_type, max_iters=4, load_from=None):
    return Runner(
        model=TinyModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=TinyData(), sampler=dict(type='InfiniteSampler', shuffle=False),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type=hook_type, by_epoch=False, interval=2)),
        load_from=load_from, resume=load_from is not None, default_scope='mmengine',
        randomness=dict(seed=0))


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even ``except Exception``)."""


def die_half_way_through(monkeypatch, name):
    """The next binary write of a file whose path contains ``name`` stops after half its bytes."""
    real_open = builtins.open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.close()
            raise Killed

    def dying_open(path, mode='r', *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return HalfWriter(f) if name in str(path) and 'wb' in mode else f

    monkeypatch.setattr(builtins, 'open', dying_open)


# ----------------------------------------------------------------------------- atomic saves
@pytest.mark.parametrize('hook_type', ['CheckpointHook', 'AtomicCheckpointHook'])
def test_kill_while_overwriting_a_checkpoint(tmp_path, monkeypatch, hook_type):
    """A run killed while re-saving iter_4.pth (after resuming from iter_2.pth)."""
    tiny_runner(tmp_path, f'a_{hook_type}', hook_type).train()
    good = torch.load(tmp_path / 'iter_4.pth', weights_only=True)['state_dict']
    with monkeypatch.context() as patch:
        die_half_way_through(patch, 'iter_4.pth')
        with pytest.raises(Killed):
            tiny_runner(tmp_path, f'b_{hook_type}', hook_type, load_from=str(tmp_path / 'iter_2.pth')).train()
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read().strip() == str(tmp_path / 'iter_4.pth')
    if hook_type == 'CheckpointHook':
        # mmengine alone: the file last_checkpoint names is truncated; --resume skips it
        assert not is_complete_checkpoint(str(tmp_path / 'iter_4.pth'))
        assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
        return
    # atomic: the old iter_4.pth is intact, the partial write sits in iter_4.pth.tmp
    assert is_complete_checkpoint(str(tmp_path / 'iter_4.pth'))
    kept = torch.load(tmp_path / 'iter_4.pth', weights_only=True)['state_dict']
    assert all(torch.equal(kept[k], v) for k, v in good.items())
    assert osp.isfile(tmp_path / 'iter_4.pth.tmp')
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    tiny_runner(tmp_path, 'c', hook_type, max_iters=6, load_from=str(tmp_path / 'iter_4.pth')).train()
    assert not osp.exists(tmp_path / 'iter_4.pth.tmp')  # cleaned when training starts
    assert is_complete_checkpoint(str(tmp_path / 'iter_6.pth'))


def test_resume_falls_back_to_newest_complete_checkpoint(tmp_path):
    for i, name in enumerate(['iter_2.pth', 'iter_4.pth']):
        torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp_path / name)
        os.utime(tmp_path / name, (100 + i, 100 + i))
    whole = (tmp_path / 'iter_4.pth').read_bytes()
    (tmp_path / 'iter_6.pth').write_bytes(whole[:len(whole) // 2])  # killed while writing
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    cfg = Config(dict(work_dir=str(tmp_path), load_from=None))
    train_options.set_resume(cfg, 'auto')
    assert cfg.resume and cfg.load_from == str(tmp_path / 'iter_4.pth')
    (tmp_path / 'last_checkpoint').write_text('')  # killed while writing the pointer
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_4.pth')
    empty = tmp_path / 'empty'
    empty.mkdir()
    cfg = Config(dict(work_dir=str(empty), load_from='pretrained.pth'))
    train_options.set_resume(cfg, 'auto')  # nothing to resume: a fresh start from the config's load_from
    assert not cfg.resume and cfg.load_from == 'pretrained.pth'


# ----------------------------------------------------------------------------- kill + resume
PROBE = '''
import time
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SlowAfter(Hook):
    """Sleeps after every iteration past `after` so that the test's SIGKILL lands mid-run."""
    priority = 'LOWEST'

    def __init__(self, after, seconds):
        self.after, self.seconds = after, seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 > self.after:
            time.sleep(self.seconds)
'''


def _train(config, work_dir, options, *flags, env=None):
    return subprocess.Popen([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), *flags,
                             *options], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _val_scalars(work_dir):
    """(first train step, mIoU) of each run in ``work_dir`` (mmengine's scalars.json, oldest first)."""
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        steps = [r['step'] for r in rows if 'loss' in r]
        mious = [r['mIoU'] for r in rows if 'mIoU' in r]
        runs.append((steps[0] if steps else None, mious[-1] if mious else None))
    return runs


def test_sigkill_then_resume_equals_uninterrupted_run(toy_seg_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    (tmp_path / 'crash_probe.py').write_text(PROBE)
    crash_cfg = tmp_path / 'crash.py'
    crash_cfg.write_text(f"_base_ = '{VIT}'\n"
                         "custom_imports = dict(imports=['mmpatch', 'crash_probe'], allow_failed_imports=False)\n"
                         "custom_hooks = [dict(type='SlowAfter', after=4, seconds=1.0)]\n")
    options = toy_options(toy_seg_root, 8, 4)
    ref_dir, crash_dir = tmp_path / 'ref', tmp_path / 'crash'
    reference = _train(VIT, ref_dir, options, env=env)
    crashing = _train(str(crash_cfg), crash_dir, options, env=env)
    pointer, deadline = crash_dir / 'last_checkpoint', time.time() + 120
    while not (pointer.is_file() and pointer.read_text().strip().endswith('iter_4.pth')):
        assert crashing.poll() is None and time.time() < deadline, crashing.communicate()[0][-3000:]
        time.sleep(0.05)
    crashing.send_signal(signal.SIGKILL)
    assert crashing.wait() == -signal.SIGKILL
    assert not (crash_dir / 'iter_8.pth').exists()

    resumed = _train(VIT, crash_dir, options, '--resume', env=env)
    for proc in (reference, resumed):
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-3000:]
    ref = torch.load(ref_dir / 'iter_8.pth', weights_only=True)['state_dict']
    res = torch.load(crash_dir / 'iter_8.pth', weights_only=True)['state_dict']
    assert ref.keys() == res.keys()
    for k in ref:
        assert torch.allclose(ref[k], res[k], rtol=0, atol=1e-6), k
    (ref_run,) = _val_scalars(ref_dir)
    resumed_run = _val_scalars(crash_dir)[-1]
    assert ref_run[0] == 1 and resumed_run[0] == 5  # the resumed run continued at iteration 5
    assert resumed_run[1] is not None and resumed_run[1] == ref_run[1]


# ----------------------------------------------------------------------------- bad data
def _toy_dataset(root, split='training'):
    with DefaultScope.overwrite_default_scope('mmseg'):  # the pipeline's transforms are mmseg's
        return ToySegDataset(data_root=str(root), num_classes=8,
                             data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                                       dict(type='PackSegInputs')])


def _index(dataset, name):
    return next(i for i in range(len(dataset)) if osp.basename(dataset.get_data_info(i)['img_path']) == name)


def test_bad_dataset_files_are_named(toy_seg_root, tmp_path):
    root = copy_toy(toy_seg_root, tmp_path)
    img, ann = root / 'images' / 'training', root / 'annotations' / 'training'
    labels = np.array(Image.open(ann / 'toy_00001.png'))
    labels[:2, :3], labels[5, 5] = 9, 12  # 8 classes: file values 1..8 (0 = unlabelled)
    Image.fromarray(labels).save(ann / 'toy_00001.png')
    (img / 'toy_00002.png').write_bytes(b'not a png')
    dataset = _toy_dataset(root)
    os.remove(ann / 'toy_00003.png')  # both gone after the file list was made
    os.remove(img / 'toy_00004.png')

    good = dataset[_index(dataset, 'toy_00000.png')]['data_samples'].gt_sem_seg.data
    assert set(good.unique().tolist()) <= set(range(8)) | {255}
    with pytest.raises(DataError, match=r'label map .*toy_00001\.png has values 8, 11 \(file values 9, 12'
                                        r'.*outside the 8 classes.*fix: set num_classes'):
        dataset[_index(dataset, 'toy_00001.png')]
    with pytest.raises(DataError, match=r'cannot read .*images/training/toy_00002\.png .*fix: '):
        dataset[_index(dataset, 'toy_00002.png')]
    with pytest.raises(DataError, match=r'missing file .*annotations/training/toy_00003\.png'):
        dataset[_index(dataset, 'toy_00003.png')]
    with pytest.raises(DataError, match=r'missing file .*images/training/toy_00004\.png'):
        dataset[_index(dataset, 'toy_00004.png')]

    # from a DataLoader worker the message arrives wrapped in PyTorch's traceback text
    loader = DataLoader(torch.utils.data.Subset(dataset, [_index(dataset, 'toy_00002.png')]),
                        num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(DataError) as err:
        next(iter(loader))
    assert 'Original Traceback' in str(err.value)
    message = original_message(err.value)
    assert '\n' not in message and message.startswith('ToySegDataset: cannot read ') and 'toy_00002.png' in message

    # a label map missing when the file list is made: found then, before any sample is loaded
    with pytest.raises(DataError, match=r'1 of 15 images have no label map: no .*annotations/training/'
                                        r'toy_00003\.png for .*images/training/toy_00003\.png'):
        _toy_dataset(root)


def test_bad_coco_images_are_named(toy_coco_root, tmp_path):
    from mmpatch.datasets import CheckedCocoDataset
    root = tmp_path / 'toy_coco'
    shutil.copytree(toy_coco_root, root)
    with DefaultScope.overwrite_default_scope('mmdet'):  # the pipeline's transforms are mmdet's
        dataset = CheckedCocoDataset(
            data_root=str(root), ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'), metainfo=dict(classes=coco_class_names(6)),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                      dict(type='PackDetInputs')])
    names = [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(3)]
    (root / 'train' / names[1]).write_bytes(b'not a png')
    os.remove(root / 'train' / names[2])
    assert dataset[0]['inputs'].shape[0] == 3
    with pytest.raises(DataError, match=rf'CheckedCocoDataset: cannot read .*train/{names[1]} .*fix: '):
        dataset[1]
    with pytest.raises(DataError, match=rf'CheckedCocoDataset: missing file .*train/{names[2]} '):
        dataset[2]


def test_corrupt_image_stops_train_py_with_one_line(toy_seg_root, tmp_path, capsys):
    root = copy_toy(toy_seg_root, tmp_path)
    bad = root / 'images' / 'training' / 'toy_00005.png'
    bad.write_bytes(b'\x89PNG truncated')
    code, err = run_cli(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'),
                                         *toy_options(root, 1, 1, 'train_dataloader.batch_size=16',
                                                      'experiment_name=corrupt')], capsys)
    assert code == 2 and 'Traceback' not in '\n'.join(err)
    assert err[-1].startswith('train.py: error: ToySegDataset: cannot read ') and str(bad) in err[-1]


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_of_another_width_lists_keys(toy_seg_root, tmp_path, capsys):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(VIT)
    cfg.model.backbone.arch.embed_dims = 48
    cfg.model.decode_head.in_channels = 48
    ckpt = tmp_path / 'wide.pth'
    with DefaultScope.overwrite_default_scope('mmseg'):
        torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)
    code, err = run_cli(apis_test.main, [VIT, str(ckpt), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                        f'test_dataloader.dataset.data_root={toy_seg_root}'], capsys, 'test.py')
    assert code == 2 and 'Traceback' not in '\n'.join(err)
    start = next(i for i, line in enumerate(err) if line.startswith('test.py: error: '))
    assert err[start] == f'test.py: error: {ckpt} does not fit {cfg.model.type}:'
    assert 'shape mismatch' in err[start + 1] and 'backbone.blocks.0.attn.qkv.weight: (144, 48)' in err[start + 1]
    assert err[-1].strip().startswith('fix: use a checkpoint of this architecture and width')


def test_patch_size_not_dividing_the_input_is_padded():
    model = PatchViT(arch=dict(embed_dims=16, num_layers=1, num_heads=2), patch_size=8, img_size=32).eval()
    with torch.no_grad():
        (out,) = model(torch.randn(1, 3, 30, 21))
    assert out.shape == (1, 16, 4, 3)  # ceil(30 / 8) x ceil(21 / 8): padded, no error


def test_missing_mamba_ssm_on_cuda_warns_once_and_uses_pytorch(monkeypatch):
    mixer = mamba2_mixer.Mamba2Mixer(16, d_state=8, headdim=8, expand=2)
    cuda_input = types.SimpleNamespace(is_cuda=True, dtype=torch.float32)  # stands for a CUDA tensor
    monkeypatch.setitem(sys.modules, 'mamba_ssm', None)  # `import mamba_ssm...` raises ImportError
    monkeypatch.setattr(mamba2_mixer, '_KERNELS', {})  # forget an earlier import
    mamba2_mixer._warn_torch_fallback.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match='mamba_ssm is not importable.*PyTorch SSD scan.*mamba-ssm'):
            assert mixer.resolved_impl(cuda_input) == 'torch'
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            assert mixer.resolved_impl(cuda_input) == 'torch'  # once only
    finally:
        mamba2_mixer._warn_torch_fallback.cache_clear()


# ----------------------------------------------------------------------------- training failures
def test_cuda_out_of_memory_suggests_fixes(toy_seg_root, tmp_path, monkeypatch, capsys):
    def forward(self, x):
        raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')

    monkeypatch.setattr(PatchViT, 'forward', forward)
    code, err = run_cli(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'),
                                         *toy_options(toy_seg_root, 1, 1, 'experiment_name=oom')], capsys)
    assert code == 1 and 'Traceback' not in '\n'.join(err)
    line = err[-1]
    assert line.startswith('train.py: error: CUDA out of memory while training in PatchViT (CUDA out of memory.')
    for fix in ('model.backbone.with_cp=True', 'train_dataloader.batch_size=2, now 4',
                '--amp --cfg-options optim_wrapper.dtype=bfloat16'):
        assert fix in line


def test_nan_loss_stops_naming_iteration_and_last_checkpoint(toy_seg_root, tmp_path, capsys):
    work_dir = str(tmp_path / 'w')
    apis_train.main([VIT, '--work-dir', work_dir, *toy_options(toy_seg_root, 2, 2, 'experiment_name=nan1')])
    capsys.readouterr()
    # resumed with a loss that is NaN from the first step on (as a diverged run would be)
    code, err = run_cli(apis_train.main, [VIT, '--work-dir', work_dir, '--resume', *toy_options(
        toy_seg_root, 4, 2, 'model.decode_head.loss_decode.loss_weight=nan', 'experiment_name=nan2')], capsys)
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert code == 1 and 'Traceback' not in '\n'.join(err)
    assert err[-1].startswith('train.py: error: loss is not finite at iteration 3 (')
    assert f'Last good checkpoint: {ckpt}.' in err[-1] and f'--resume {ckpt}' in err[-1]
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))


def test_nan_loss_hook_without_checkpoint(tmp_path):
    from mmpatch.engine.finite_loss_hook import FiniteLossHook
    runner = types.SimpleNamespace(iter=0, work_dir=str(tmp_path))
    FiniteLossHook().after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.0), acc=torch.tensor(float('nan'))))
    with pytest.raises(NonFiniteLossError, match=r'iteration 1 \(loss=inf, loss_x=inf\).*checkpoint: none.*start again'):
        FiniteLossHook().after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(float('inf')),
                                                                  loss_x=torch.tensor(float('inf'))))


# ----------------------------------------------------------------------------- FSDP option
def test_fsdp_config_and_wrap_policy():
    from mmengine.registry import FUNCTIONS, RUNNERS, STRATEGIES
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'fsdp', 'vit_l_p1_linear_fsdp.py'))
    assert cfg.runner_type == 'FlexibleRunner' and cfg.strategy.type == 'FSDPStrategy'
    assert cfg.strategy.state_dict_cfg == 'full' and cfg.model.backbone.with_cp
    assert cfg.model.backbone.arch == 'large' and cfg.model.backbone.patch_size == 1
    assert RUNNERS.get('FlexibleRunner') is not None and STRATEGIES.get('FSDPStrategy') is not None
    policy = FUNCTIONS.get(cfg.strategy.model_wrapper.auto_wrap_policy.type)
    assert policy is patch_block_wrap_policy
    backbone = PatchViT(arch=dict(embed_dims=16, num_layers=2, num_heads=2), patch_size=8, img_size=32)
    wrapped = [name for name, m in backbone.named_modules() if policy(m, recurse=False, nonwrapped_numel=0)]
    assert wrapped == ['blocks.0', 'blocks.1'] and policy(backbone, recurse=True, nonwrapped_numel=0)
