"""docs/custom_decoder.md, run as written: a user module registers a head, a config uses it."""
import re
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import mmpatch  # noqa: F401  (registers the models)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / 'docs' / 'custom_decoder.md'


def doc_files():
    """``{file name: text}`` of the doc's python blocks, each named by its first comment line."""
    blocks = re.findall(r'```python\n# (\S+)\n(.*?)```', DOC.read_text(), flags=re.S)
    return {name: f'# {name}\n{body}' for name, body in blocks}


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """The doc's module and config in a folder shaped like an mmpatch checkout."""
    files = doc_files()
    assert set(files) == {'my_decoders.py', 'configs/custom/vit_b_p16_mlp.py'}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in ('ade20k', '_base_'):  # the zoo the config inherits from
        (tmp_path / 'configs' / folder).symlink_to(REPO / 'configs' / folder)
    monkeypatch.syspath_prepend(str(tmp_path))  # = PYTHONPATH=$PWD, for this test only
    yield tmp_path
    MODELS.module_dict.pop('TokenMLPHead', None)  # leave the registries as found
    sys.modules.pop('my_decoders', None)


def test_doc_config_is_five_lines():
    lines = doc_files()['configs/custom/vit_b_p16_mlp.py'].strip().splitlines()
    assert len(lines) <= 6  # the file-name comment + 5 lines


def test_registered_head_builds_and_runs_from_the_doc_config(user_project):
    assert 'TokenMLPHead' not in MODELS.module_dict
    cfg = Config.fromfile(user_project / 'configs' / 'custom' / 'vit_b_p16_mlp.py')
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
