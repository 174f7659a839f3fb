"""docs/custom_decoder.md, run as written: a user module registers a head, configs use it, and
the page's commands train and test the toy config."""
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import mmpatch  # noqa: F401  (registers the models)
from mmpatch.apis import test as apis_test
from mmpatch.apis import train as apis_train

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / 'docs' / 'custom_decoder.md'
FILES = {'examples/my_decoders.py', 'configs/custom/vit_t_p8_mlp.py', 'configs/custom/vit_b_p16_mlp.py'}


def doc_files():
    """``{file path: text}`` of the doc's python blocks, each named by its first comment line."""
    blocks = re.findall(r'```python\n# (\S+)\n(.*?)```', DOC.read_text(), flags=re.S)
    return {name: f'# {name}\n{body}' for name, body in blocks}


def doc_commands():
    """The doc's shell commands, one per line."""
    blocks = re.findall(r'```shell\n(.*?)```', DOC.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture
def user_module(monkeypatch):
    """``PYTHONPATH=examples`` for this test only; the registries and modules left as found."""
    monkeypatch.syspath_prepend(str(REPO / 'examples'))
    yield
    MODELS.module_dict.pop('TokenMLPHead', None)
    sys.modules.pop('my_decoders', None)


def test_doc_files_are_the_repository_files():
    files = doc_files()
    assert set(files) == FILES
    for name, text in files.items():
        assert (REPO / name).read_text() == text, f'{name} differs from docs/custom_decoder.md'
    for name in FILES - {'examples/my_decoders.py'}:
        assert len(files[name].strip().splitlines()) <= 6  # the file-name comment + 5 lines


def test_registered_head_builds_and_runs_from_the_doc_config(user_module):
    assert 'TokenMLPHead' not in MODELS.module_dict
    cfg = Config.fromfile(REPO / 'configs' / 'custom' / 'vit_b_p16_mlp.py')
    assert 'TokenMLPHead' in MODELS.module_dict  # registered by custom_imports
    assert cfg.custom_imports.imports == ['mmpatch', 'my_decoders']
    assert set(cfg.model.decode_head) == {'type', 'in_channels', 'channels', 'num_classes'}
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model).eval()
    head = model.decode_head
    assert type(head).__name__ == 'TokenMLPHead'
    assert type(head).__module__ == 'my_decoders'
    assert head.hidden[0].in_channels == 768 and head.conv_seg.in_channels == 256
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 150, 4, 4)  # stride 16 on a 64 px input
    assert torch.isfinite(logits).all()


def test_doc_commands_run_as_written(user_module, tmp_path, monkeypatch, capsys):
    """Each command of the page, as written (the venv python, PYTHONPATH=examples, paths relative
    to the repository root), on a small toy set: data made in tmp_path, 2 iterations."""
    monkeypatch.chdir(REPO)
    commands = doc_commands()
    toy = [c for c in commands if 'vit_t_p8_mlp' in c or 'make_toy' in c]
    assert len(toy) == 3, commands
    data, work_dir = tmp_path / 'toy_seg', tmp_path / 'work'
    roots = [f'{s}_dataloader.dataset.data_root={data}' for s in ('train', 'val', 'test')]
    for command in toy:
        words = shlex.split(command)
        env = [w for w in words if re.fullmatch(r'[A-Z_]+=\S*', w)]
        words = words[len(env):]
        assert words[0] == '.venv/bin/python' and env in ([], ['PYTHONPATH=examples']), command
        script, argv = words[1], words[2:]
        if script == 'tools/data/make_toy.py':
            assert argv == ['seg', '--out', 'data/toy_seg']
            runpy.run_path(script)['main']([*argv, '--out', str(data), '--num-train', '8', '--num-val', '2'])
        elif script == 'tools/train.py':
            assert argv == ['configs/custom/vit_t_p8_mlp.py']
            apis_train.main([*argv, '--work-dir', str(work_dir), '--max-iters', '2', '--cfg-options', *roots])
        else:
            assert script == 'tools/test.py' and argv[1] == 'work_dirs/vit_t_p8_mlp/iter_400.pth'
            assert Config.fromfile(argv[0]).train_cfg.max_iters == 400  # the doc's checkpoint name
            apis_test.main([argv[0], str(work_dir / 'iter_2.pth'), '--work-dir', str(work_dir / 'test'),
                            '--cfg-options', *roots])
    out = capsys.readouterr().out
    assert 'mIoU' in out and 'test.py: metrics: ' in out
