"""The default configs are stock OpenMMLab plus mmpatch's models, dataset and hooks; the fast data
path (mmpatch/fast/, configs/fast/) trains to the same losses."""
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import Registry

import mmpatch  # noqa: F401  (registers the default classes, as the leaves' custom_imports)
import mmpatch.fast  # noqa: F401  (registers the wing, so that the check below can see it)

REPO = Path(__file__).resolve().parents[1]
# Every leaf config but the fast wing's own (detection leaves included).
DEFAULT_LEAVES = sorted(p for p in (REPO / 'configs').rglob('*.py')
                        if p.parent.name not in ('_base_', 'fast') and '_base_' not in p.parts)
FAST_LEAVES = sorted((REPO / 'configs' / 'fast').glob('*.py'))
# What a default config may take from mmpatch: models (backbones, neck, heads and the LN2d norm
# layer their norm_cfg names), datasets and the engine's hooks, loops, optimizer
# constructor and FSDP wrap policy.
ALLOWED = ('mmpatch.models.backbones', 'mmpatch.models.necks', 'mmpatch.models.heads',
           'mmpatch.models.layers', 'mmpatch.datasets', 'mmpatch.engine')
TOY_LEAF = REPO / 'configs' / 'toy' / 'vit_t_p8_linear.py'
TOY_FAST = REPO / 'configs' / 'fast' / 'vit_t_p8_linear_fast_toy.py'


@functools.lru_cache(maxsize=None)
def mmpatch_registered():
    """{registered name: defining module} of every mmpatch class or function in any registry."""
    import mmengine.registry as root
    found = {}

    def walk(registry):
        for name, obj in registry.module_dict.items():
            module = getattr(obj, '__module__', '') or ''
            if module.startswith('mmpatch'):
                found[name] = module
        for child in registry.children.values():
            walk(child)

    for registry in vars(root).values():
        if isinstance(registry, Registry) and registry.parent is None:
            walk(registry)
    return found


def referenced_names(node):
    """Every string a config builds from: ``type`` values and optimizer ``constructor``s."""
    if isinstance(node, dict):
        names = [node[k] for k in ('type', 'constructor') if isinstance(node.get(k), str)]
        return names + [n for v in node.values() for n in referenced_names(v)]
    if isinstance(node, (list, tuple)):
        return [n for v in node for n in referenced_names(v)]
    return []


def mmpatch_outside_allowed(path):
    """(name, module) of each mmpatch class a config uses from outside ``ALLOWED``."""
    registered = mmpatch_registered()
    cfg = Config.fromfile(str(path), import_custom_modules=False)  # e.g. examples/' decoders
    return sorted({(n, registered[n]) for n in referenced_names(cfg.to_dict())
                   if n in registered and not registered[n].startswith(ALLOWED)})


def test_the_check_sees_mmpatch_classes():
    registered = mmpatch_registered()
    for name in ('PatchViT', 'PatchPyramidNeck', 'LinearHead', 'ToySegDataset',
                 'HostLogEncoderDecoder', 'StackedSegDataPreProcessor', 'stack_seg_collate',
                 'PrefetchBatchHook', 'FastRandomCrop', 'FastPhotoMetricDistortion'):
        assert name in registered, name
    assert registered['HostLogEncoderDecoder'].startswith('mmpatch.fast')


@pytest.mark.parametrize('path', DEFAULT_LEAVES, ids=lambda p: str(p.relative_to(REPO)))
def test_default_configs_use_no_mmpatch_class_outside_the_allowed_set(path):
    assert mmpatch_outside_allowed(path) == []


@pytest.mark.parametrize('path', FAST_LEAVES, ids=lambda p: p.name)
def test_fast_configs_use_the_whole_wing(path):
    used = {name for name, _ in mmpatch_outside_allowed(path)}
    assert used >= {'HostLogEncoderDecoder', 'StackedSegDataPreProcessor', 'stack_seg_collate',
                    'PrefetchBatchHook', 'FastRandomCrop'}
    cfg = Config.fromfile(str(path))
    assert 'mmpatch.fast' in cfg.custom_imports.imports


def test_there_are_94_segmentation_leaves_and_2_fast_ones():
    seg = [p for p in DEFAULT_LEAVES if p.parent.name in ('ade20k', 'toy', 'toy_gpu', 'fsdp')
           and 'mask_rcnn' not in p.name and 'smoke' not in p.name]
    assert len(seg) == 94 and len(FAST_LEAVES) == 2


def train_losses(path, data_root, work_dir, iters=3):
    """The per-iteration losses (and the model) of ``iters`` training iterations of ``path``."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(path))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.train_dataloader.batch_size = 4
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    history = runner.message_hub.get_scalar('train/loss').data[0]
    return torch.tensor([float(v) for v in history]), runner.model


def test_fast_toy_config_trains_to_the_same_losses(toy_seg_root, tmp_path):
    stock_losses, stock = train_losses(TOY_LEAF, toy_seg_root, tmp_path / 'stock')
    fast_losses, fast = train_losses(TOY_FAST, toy_seg_root, tmp_path / 'fast')
    assert type(stock).__name__ == 'EncoderDecoder'
    assert type(fast).__name__ == 'HostLogEncoderDecoder'
    assert len(stock_losses) == len(fast_losses) == 3
    torch.testing.assert_close(fast_losses, stock_losses)
    for (name, a), (_, b) in zip(stock.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b, a, msg=name)
