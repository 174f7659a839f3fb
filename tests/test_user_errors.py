"""Every class of user mistake ends in one line ``<tool>: error: ...`` naming the file / key /
value and the fix, exit code 2, no traceback (docs/robustness.md, "Errors and their messages").

The tools run in-process (``errors.run`` on the ``main`` functions, as tools/train.py and
tools/test.py call them) on the toy ViT p8 config and a copy of the small session toy set.
"""
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

import mmpatch  # noqa: F401  (registers the models)
from mmpatch.apis import checks
from mmpatch.apis import errors
from mmpatch.apis import runner as apis_runner
from mmpatch.apis import test as apis_test
from mmpatch.apis import train as apis_train
from mmpatch.utils.errors import ConfigValueError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIT = os.path.join(REPO, 'configs', 'toy', 'vit_t_p8_linear.py')
UPERNET = os.path.join(REPO, 'configs', 'toy', 'vit_t_p8_upernet.py')
SHORT = ['train_cfg.max_iters=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']


def tool(main, argv, capsys, prog='train.py'):
    """(exit code, the error line) of a tool run that fails; asserts the one-line contract."""
    with pytest.raises(SystemExit) as info:
        errors.run(lambda: main(argv), prog, argv)
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f'{prog}: error: '), err
    return info.value.code, line


def data_options(root):
    return [f'{s}_dataloader.dataset.data_root={root}' for s in ('train', 'val', 'test')]


def copy_toy(toy_seg_root, tmp_path):
    root = tmp_path / 'toy_seg'
    shutil.copytree(toy_seg_root, root)
    return root


@pytest.fixture
def checkpoint(tmp_path):
    """A small zip-format checkpoint (what tools/train.py saves: state_dict + meta)."""
    path = tmp_path / 'ckpt.pth'
    torch.save({'meta': {'iter': 1}, 'state_dict': {'w': torch.zeros(256)}}, path)
    return path


# ----------------------------------------------------------------------------- config load
def test_config_that_does_not_load_names_file_and_line(tmp_path, capsys):
    broken = tmp_path / 'broken.py'
    broken.write_text(f"_base_ = '{VIT}'\nmodel = dict(backbone=dict(patch_size=4)\n")
    code, line = tool(apis_train.main, [str(broken)], capsys)
    assert code == 2 and f'cannot load config {broken}, line 2: SyntaxError: ' in line
    assert 'model = dict(backbone=dict(patch_size=4)' in line

    child = tmp_path / 'child.py'  # the broken file is a base: the base is named
    child.write_text("_base_ = './broken.py'\n")
    code, line = tool(apis_train.main, [str(child)], capsys)
    assert f'cannot load config {broken}, line 2 (a base of {child}): SyntaxError' in line

    undefined = tmp_path / 'undefined.py'
    undefined.write_text(f"_base_ = '{VIT}'\n\nmodel = dict(backbone=dict(patch_size=p))\n")
    code, line = tool(apis_test.main, [str(undefined), 'x.pth'], capsys, 'test.py')
    assert code == 2 and f"{undefined}, line 3: NameError: name 'p' is not defined" in line

    no_base = tmp_path / 'no_base.py'
    no_base.write_text("_base_ = './nope.py'\n")
    code, line = tool(apis_train.main, [str(no_base)], capsys)
    assert f"cannot load config {no_base}: its _base_ {tmp_path / 'nope.py'} does not exist" in line

    no_module = tmp_path / 'no_module.py'
    no_module.write_text(f"_base_ = '{VIT}'\ncustom_imports = dict(imports=['mmpatch', 'my_decoderz'])\n")
    code, line = tool(apis_train.main, [str(no_module)], capsys)
    assert "custom_imports names 'my_decoderz', which cannot be imported" in line

    code, line = tool(apis_train.main, [VIT.replace('linear', 'linaer')], capsys)
    assert code == 2 and 'config file not found: ' in line and f'nearest: {os.path.dirname(VIT)}' in line


def test_misspelt_type_in_a_config_names_key_and_nearest(tmp_path, capsys):
    cfg = tmp_path / 'typo.py'
    cfg.write_text(f"_base_ = '{VIT}'\nmodel = dict(decode_head=dict(type='LinearHaed'))\n")
    code, line = tool(apis_train.main, [str(cfg)], capsys)
    assert code == 2 and f"config {cfg}: model.decode_head.type='LinearHaed' is not registered" in line
    assert 'nearest: LinearHead' in line


# ----------------------------------------------------------------------------- --cfg-options
def test_unknown_cfg_options_keys_are_listed_with_the_nearest(tmp_path, capsys):
    code, line = tool(apis_train.main, [VIT, '--cfg-options', 'train_cfg.max_iterz=5',
                                       'model.backbone.patchsize=4', 'randomness.determinstic=True',
                                       'default_hooks.loger.interval=1', 'train_cgf.max_iters=5'], capsys)
    assert code == 2 and line.startswith('train.py: error: unknown keys in --cfg-options: ')
    for key, nearest in (('train_cfg.max_iterz', 'train_cfg.max_iters'),
                         ('model.backbone.patchsize', 'model.backbone.patch_size'),
                         ('randomness.determinstic', 'randomness.deterministic'),
                         ('default_hooks.loger.interval', 'default_hooks.logger'),
                         ('train_cgf.max_iters', 'train_cfg')):
        assert f'{key} (' in line and f'nearest: {nearest}' in line, key
    assert "train_cfg is an IterBasedTrainLoop, which has no argument 'max_iterz'" in line
    # keys the config lacks but its classes take are fine (checked up to the data check)
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       'model.backbone.with_cp=True', 'train_cfg.val_begin=5',
                                       'train_dataloader.pin_memory=True', 'experiment_name=x',
                                       *data_options(tmp_path / 'nowhere')], capsys)
    assert 'dataset path not found' in line


def test_bad_cfg_options_values_name_key_value_and_type(capsys):
    code, line = tool(apis_train.main, [VIT, '--cfg-options', 'train_cfg.max_iters=abc',
                                       'optim_wrapper.optimizer.lr=x', 'model.type=EncoderDecoderr'], capsys)
    assert code == 2 and line.startswith('train.py: error: bad values in --cfg-options: ')
    assert "train_cfg.max_iters=abc (expected an integer: the config has 400; got the text 'abc')" in line
    assert 'optim_wrapper.optimizer.lr=x (expected a number: the config has 0.001' in line
    assert 'model.type=EncoderDecoderr (not a name in the mmseg MODELS registry; nearest: EncoderDecoder' in line
    # a top-level variable of the config file: substituted at load time, so the option would do nothing
    code, line = tool(apis_train.main, [VIT, '--cfg-options', 'crop_size=(16,16)'], capsys)
    assert code == 2 and line.startswith('train.py: error: option without effect in --cfg-options: '
                                         'crop_size=(16, 16) (crop_size is a variable of the config file: ')
    assert 'keys that hold it: model.data_preprocessor.size, model.backbone.img_size' in line
    # an item without '=': argparse's usage error (its own two lines, exit 2)
    with pytest.raises(SystemExit) as info:
        errors.run(lambda: apis_train.main([VIT, '--cfg-options', 'train_cfg.max_iters']), 'train.py')
    err = capsys.readouterr().err
    assert info.value.code == 2 and "'train_cfg.max_iters' is not key=value" in err.splitlines()[-1]


# ----------------------------------------------------------------------------- patch size vs crop
@pytest.mark.parametrize('p, problem', [(3, 'does not divide the 32x32 crop'),
                                        (0, 'is not a patch size (an integer in 1..32)'),
                                        (64, 'is not a patch size (an integer in 1..32)')])
def test_patch_size_that_does_not_fit_the_crop(p, problem, checkpoint, capsys):
    expected = (f'model.backbone.patch_size={p} {problem}' + (' ' if p == 3 else ' for the 32x32 crop ')
                + '(model.backbone.img_size); valid patch sizes: 1, 2, 4, 8, 16, 32; fix: --cfg-options '
                'model.backbone.patch_size=')
    option = ['--cfg-options', f'model.backbone.patch_size={p}']
    for main, argv, prog in ((apis_train.main, [VIT, *option], 'train.py'),
                             (apis_test.main, [VIT, str(checkpoint), *option], 'test.py')):
        code, line = tool(main, argv, capsys, prog)
        assert code == 2 and expected in line, line
    if p == 3:
        return  # that p divides the crop is a segmentation rule: the CLI's (detection pads)
    # out of 1..32: the backbones' own rule, when built (any caller, detection too)
    cfg = Config.fromfile(VIT)
    cfg.model.backbone.patch_size = p
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'), pytest.raises(ConfigValueError, match=expected[:40]):
        MODELS.build(cfg.model)
    from mmpatch.models.backbones.patch_mamba import PatchMamba
    with pytest.raises(ConfigValueError, match=r'for the 48x48 crop \(model.backbone.img_size\); valid patch '
                                               r'sizes: 1, 2, 3, 4, 6, 8, 12, 16, 24; fix: '):
        PatchMamba(arch=dict(embed_dims=32, num_layers=1), patch_size=p, img_size=48)


def test_detection_keeps_patch_sizes_that_do_not_divide_its_padding():
    """docs/detection.md: any p in 1..32 runs (images padded), so no divisibility rule there."""
    from mmpatch.models.backbones.plain_backbone import patch_size_error
    from mmpatch.models.backbones.patch_vit import PatchViT
    PatchViT(arch=dict(embed_dims=16, num_layers=1, num_heads=2), patch_size=12, img_size=800)
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'toy', 'vit_t_p8_mask_rcnn_toy.py'))
    cfg.model.backbone.patch_size = cfg.model.neck.in_stride = 12
    checks.check_patch_sizes(cfg, 'mmdet')
    assert 'does not divide the 64x64 crop' in patch_size_error(12, 64)


def test_neck_stride_must_follow_the_patch_size(capsys):
    code, line = tool(apis_train.main, [UPERNET, '--cfg-options', 'model.backbone.patch_size=4'], capsys)
    assert code == 2 and 'model.neck.in_stride=8 differs from model.backbone.patch_size=4' in line
    assert line.endswith('fix: --cfg-options model.neck.in_stride=4 (leaf configs set both from one patch_size)')


# ----------------------------------------------------------------------------- data layout
@pytest.mark.parametrize('split', ['training', 'validation'])
def test_empty_split_names_the_folder(split, toy_seg_root, tmp_path, capsys):
    root = copy_toy(toy_seg_root, tmp_path)
    for name in os.listdir(root / 'images' / split):
        os.remove(root / 'images' / split / name)
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       *data_options(root), *SHORT], capsys)
    assert code == 2 and line == (f'train.py: error: ToySegDataset: the image folder {root}/images/{split} is '
                                  'empty; fix: put the images (and their label maps) there, or point '
                                  'data_root / data_prefix.img_path at the split that has them')
    assert not (tmp_path / 'w' / 'iter_1.pth').exists()  # found before training


def test_images_of_another_suffix_name_suffix_and_fix(tmp_path, capsys):
    import runpy
    root = tmp_path / 'toy_jpg'
    runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main'](
        ['seg', '--out', str(root), '--num-train', '4', '--num-val', '2', '--image-format', 'jpg'])
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       *data_options(root), *SHORT], capsys)
    assert code == 2 and (f"ToySegDataset: no '*.png' images in {root}/images/training (img_suffix='.png'); "
                          "it holds 4 '.jpg' files; fix: set the dataset's img_suffix='.jpg'") in line
    assert line.endswith('--cfg-options train_dataloader.dataset.img_suffix=.jpg '
                         'val_dataloader.dataset.img_suffix=.jpg test_dataloader.dataset.img_suffix=.jpg')


def test_label_map_of_another_size_names_the_file(toy_seg_root, tmp_path, capsys):
    root = copy_toy(toy_seg_root, tmp_path)
    bad = root / 'annotations' / 'training' / 'toy_00003.png'
    Image.fromarray(np.ones((60, 64), np.uint8)).save(bad)
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       *data_options(root), *SHORT, 'train_dataloader.batch_size=16'], capsys)
    assert code == 2 and f'ToySegDataset: label map {bad} is 60x64 but its image ' in line
    assert f'{root}/images/training/toy_00003.png is 64x64 (sample ' in line and "fix: give the label map" in line


def test_image_without_its_label_map_is_found_before_training(toy_seg_root, tmp_path, capsys):
    root = copy_toy(toy_seg_root, tmp_path)
    ann = root / 'annotations' / 'validation'
    os.rename(ann / 'toy_00001.png', ann / 'toy_0001.png')  # a name that no longer matches its image
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       *data_options(root), *SHORT], capsys)
    assert code == 2 and line == (
        f'train.py: error: ToySegDataset: 1 of 4 images have no label map: no {ann}/toy_00001.png for '
        f'{root}/images/validation/toy_00001.png; fix: restore the label maps (same name as the image, '
        'seg_map_suffix), or remove those images from the split')
    assert not (tmp_path / 'w' / 'iter_1.pth').exists()


def test_head_with_fewer_classes_than_the_dataset(toy_seg_root, tmp_path, checkpoint, capsys):
    option = [*data_options(toy_seg_root), 'model.decode_head.num_classes=5']
    expected = ('model.decode_head.num_classes=5 but the dataset (ToySegDataset, {}) has 8 classes; '
                'fix: --cfg-options model.decode_head.num_classes=8')
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *option,
                                       *SHORT], capsys)
    assert code == 2 and line.endswith(expected.format('train_dataloader'))
    code, line = tool(apis_test.main, [VIT, str(checkpoint), '--work-dir', str(tmp_path / 't'),
                                      '--cfg-options', *option], capsys, 'test.py')
    assert code == 2 and line.endswith(expected.format('test_dataloader'))


def test_toy_set_of_another_class_count_names_both_and_the_keys(tmp_path, capsys):
    import runpy
    root = tmp_path / 'toy6'
    runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main'](
        ['seg', '--out', str(root), '--num-train', '4', '--num-val', '2', '--num-classes', '6'])
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                       *data_options(root), *SHORT], capsys)
    assert code == 2 and line == (
        f'train.py: error: ToySegDataset: {root} was generated with num_classes=6 but the dataset config '
        'says num_classes=8: make them agree; fix: --cfg-options train_dataloader.dataset.num_classes=6 '
        'val_dataloader.dataset.num_classes=6 test_dataloader.dataset.num_classes=6 '
        'model.decode_head.num_classes=6, or regenerate the set with --num-classes 8')


# ----------------------------------------------------------------------------- checkpoint files
def test_unusable_checkpoint_files_are_named(checkpoint, tmp_path, capsys):
    whole = checkpoint.read_bytes()
    files = {'truncated': whole[:len(whole) // 2], 'text': b'weights are at example.org\n', 'empty': b''}
    for name, content in files.items():
        (tmp_path / f'{name}.pth').write_bytes(content)
    torch.save([torch.zeros(2)], tmp_path / 'list.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp_path / 'weights.pth')
    problems = {'truncated': 'the file is truncated (a torch zip file without its end: the save was cut short)',
                'text': "it is a text file, not a torch checkpoint (it starts 'weights are at example.org')",
                'empty': 'the file is empty (0 bytes)'}
    fix = 'fix: give a complete checkpoint saved by tools/train.py'
    for name in (*problems, 'list', 'weights', 'missing'):
        path = tmp_path / f'{name}.pth'
        for main, argv, prog, flag in (
                (apis_test.main, [VIT, str(path)], 'test.py', 'test.py CHECKPOINT'),
                (apis_train.main, [VIT, '--work-dir', str(tmp_path / 'w'), '--resume', str(path)], 'train.py',
                 '--resume')):
            if name == 'weights' and prog == 'test.py':
                continue  # weights alone are a fine checkpoint to test
            code, line = tool(main, argv, capsys, prog)
            assert code == 2, line
            if name in problems:
                assert line == f'{prog}: error: {flag}: cannot read checkpoint {path}: {problems[name]}; ' \
                    f'{fix} (iter_N.pth; --resume alone picks the newest complete one in the work dir)'
            elif name == 'list':
                assert f'{flag}: {path} is not a checkpoint: it holds a list, not a state dict' in line
            elif name == 'weights':
                assert line.startswith(f'train.py: error: --resume: {path} holds weights only (no meta')
                assert line.endswith(f'or start from these weights with --cfg-options load_from={path}')
            else:
                assert line == f'{prog}: error: {flag}: checkpoint not found: {path}'


# ----------------------------------------------------------------------------- nothing overwritten
def test_training_into_a_work_dir_with_checkpoints_stops(tmp_path, capsys):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    (work_dir / 'iter_10.pth').write_bytes(b'earlier run')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_10.pth'))
    code, line = tool(apis_train.main, [VIT, '--work-dir', str(work_dir)], capsys)
    assert code == 2 and line == (f'train.py: error: work dir {work_dir} already holds checkpoints '
                                  '(iter_10.pth, last_checkpoint): training again would overwrite them and '
                                  'mix two runs; fix: --resume to continue that run, or --work-dir '
                                  'NEW_FOLDER for a new one')
    assert (work_dir / 'iter_10.pth').read_bytes() == b'earlier run'
    assert sorted(os.listdir(work_dir)) == ['iter_10.pth', 'last_checkpoint']


# ----------------------------------------------------------------------------- the exit path itself
def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch, capsys):
    argv = [VIT, '--cfg-options', 'train_cfg.max_iterz=5']
    for extra, env in ((['--debug'], None), ([], '1')):
        if env:
            monkeypatch.setenv('MMPATCH_DEBUG', env)
        with pytest.raises(SystemExit) as info:
            errors.run(lambda: apis_train.main(argv + extra), 'train.py', argv + extra)
        err = capsys.readouterr().err
        assert info.value.code == 2 and 'Traceback' in err and 'check_cfg_options' in err
        assert err.strip().splitlines()[-1].startswith('train.py: error: unknown key in --cfg-options')
    monkeypatch.delenv('MMPATCH_DEBUG')

    def bug(argv):
        raise KeyError('a bug, not a user error')
    with pytest.raises(KeyError, match='a bug'):  # re-raised as it is: Python prints its traceback
        errors.run(lambda: bug(argv), 'train.py', argv)


def test_make_toy_errors_exit_2(tmp_path, capsys):
    import runpy
    main = runpy.run_path(os.path.join(REPO, 'tools', 'data', 'make_toy.py'))['main']
    for argv, message in ((['coco', '--image-format', 'jpg'], '--image-format applies to the seg set only'),
                          (['seg', '--img-size', '1', '2', '3'], '--img-size takes one value or two')):
        with pytest.raises(SystemExit) as info:
            main([*argv, '--out', str(tmp_path / 'x')])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().startswith(f'make_toy.py: error: {message}')


def test_quiet_console_keeps_the_dumps_in_the_log_file_only():
    quiet = apis_runner.QuietConsole()

    def record(msg, level=logging.INFO):
        return logging.LogRecord('mmengine', level, __file__, 1, msg, None, None)
    for dump in ('\n' + '-' * 60 + '\nSystem environment:\n    sys.platform: linux', 'Config:\nmodel = dict()',
                 'Hooks will be executed in the following order:\nbefore_run:'):
        assert not quiet.filter(record(dump))
    assert quiet.filter(record('Iter(train) [10/20]  lr: 1.0e-03  loss: 1.1'))
    assert quiet.filter(record('something else', logging.WARNING))
