"""mmpatch's models leave PyTorch's process-wide settings as they found them (CPU).

Each test snapshots ``torch_settings()`` (SDPA priority order and kernel flags, cuDNN / TF32 /
matmul precision, dynamo / inductor / functorch configuration, default dtype, grad, autocast
and thread settings) before a forward + backward and asserts the snapshot after is identical.
``tools/analysis/check.py global-state`` does the same on CUDA (compiled blocks included).
"""
import copy
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from mmpatch.models.backbones import plain_backbone
from mmpatch.models.backbones.patch_mamba import PatchMamba
from mmpatch.models.backbones.patch_vit import PatchViT
from mmpatch.models.layers.sdpa_backend import ATTN_BACKENDS
from mmpatch.utils.torch_state import sdpa_state, set_sdpa_state, settings_diff, torch_settings

ROOT = Path(__file__).resolve().parents[1]
VIT = dict(embed_dims=32, num_layers=2, num_heads=2)
MAMBA = dict(embed_dims=32, num_layers=2, headdim=16, d_state=8, chunk_size=8)
CPU_UNSUPPORTED = ('cudnn', 'efficient')  # strict backends that raise for CPU inputs


@pytest.fixture
def settings():
    """The snapshot before the test; fails the test if the settings differ after it."""
    before = torch_settings()
    order, flags = sdpa_state()
    yield before
    diff = settings_diff(before, torch_settings())
    set_sdpa_state(order, flags)  # a failing test must not fail the next ones
    assert diff == {}, f'process-wide settings changed: {diff}'


def forward_backward(model, x, autocast):
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        outs = model(x)
    sum(o.float().mean() for o in outs).backward()


@pytest.mark.parametrize('backend', ATTN_BACKENDS)
@pytest.mark.parametrize('with_cp', [False, True])
@pytest.mark.parametrize('autocast', [False, True])
def test_patch_vit_leaves_settings(settings, backend, with_cp, autocast):
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, attn_backend=backend,
                     with_cp=with_cp).train()
    if backend in CPU_UNSUPPORTED:
        with pytest.raises(RuntimeError):  # the settings are restored after the error too
            forward_backward(model, torch.randn(2, 3, 32, 32), autocast)
    else:
        forward_backward(model, torch.randn(2, 3, 32, 32), autocast)


@pytest.mark.parametrize('compile_blocks', [True, 'reduce-overhead', 'max-autotune-no-cudagraphs'])
def test_patch_vit_compile_switches_leave_settings(settings, compile_blocks):
    # on a CPU the blocks run eagerly whatever the mode (they compile for CUDA inputs only)
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=compile_blocks).train()
    forward_backward(model, torch.randn(2, 3, 32, 32), autocast=True)


def test_compiled_blocks_leave_settings(settings, monkeypatch):
    # the blocks through dynamo and AOT autograd (inductor's code generation aside: minutes
    # on a CPU), inside the attention context as on CUDA
    call = torch.compile(plain_backbone.call_block, backend='aot_eager')
    model = PatchViT(arch=VIT, patch_size=8, img_size=32, compile_blocks=True).train()
    monkeypatch.setattr(model, '_block_call', lambda x: call)
    forward_backward(model, torch.randn(2, 3, 32, 32), autocast=False)
    torch._dynamo.reset()


def _only_math():
    return sdpa_kernel(SDPBackend.MATH)


def _cudnn_off():
    torch.backends.cuda.enable_cudnn_sdp(False)


def _reordered():
    torch._C._set_sdp_priority_order([0, 3, 1, 2, 4])


@pytest.mark.parametrize('user_setting', [_cudnn_off, _reordered])
def test_auto_attention_keeps_the_users_sdpa_settings(user_setting):
    # a kernel disabled on entry, or a custom order: torch's sdpa_kernel(set_priority=True)
    # would restore the disabled kernel's place in the order the context gave
    order, flags = sdpa_state()
    try:
        user_setting()
        users = torch_settings()
        forward_backward(PatchViT(arch=VIT, patch_size=8, img_size=32).train(),
                         torch.randn(2, 3, 32, 32), autocast=False)
        assert settings_diff(users, torch_settings()) == {}
    finally:
        set_sdpa_state(order, flags)


def test_auto_attention_inside_a_users_sdpa_kernel(settings):
    with _only_math():
        users = torch_settings()
        forward_backward(PatchViT(arch=VIT, patch_size=8, img_size=32).train(),
                         torch.randn(2, 3, 32, 32), autocast=False)
        assert settings_diff(users, torch_settings()) == {}


@pytest.mark.parametrize('with_cp', [False, True])
@pytest.mark.parametrize('autocast', [False, True])
def test_patch_mamba_leaves_settings(settings, with_cp, autocast):
    model = PatchMamba(arch=MAMBA, patch_size=8, img_size=32, with_cp=with_cp).train()
    forward_backward(model, torch.randn(2, 3, 32, 32), autocast)


def _seg_batch(size, num_classes, n=2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(n):
        sample = SegDataSample(gt_sem_seg=PixelData(
            data=torch.randint(0, num_classes, (1, size, size))))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                        for _ in range(n)], data_samples=samples)


@pytest.mark.parametrize('config,fast_loss', [
    ('vit_t_p8_linear', True), ('vit_t_p8_linear', False), ('vit_t_p8_upernet', True),
    ('adventurer_t_p8_linear', True), ('adventurer_t_p8_upernet', True)])
def test_toy_segmentors_leave_settings(settings, config, fast_loss):
    # LinearHead (its loss paths), PatchPyramidNeck + UPerHead, the data preprocessor,
    # the segmentor's train_step and the optimizer step, as the toy configs build them
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(str(ROOT / 'configs' / 'toy' / f'{config}.py'))
    if cfg.model.decode_head.type == 'LinearHead':
        cfg.model.decode_head.fast_loss = fast_loss
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model).train()
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        log = model.train_step(_seg_batch(32, cfg.model.decode_head.num_classes), optim_wrapper)
    assert all(torch.isfinite(v).all() for v in log.values())


# Each switch a model could leave behind, set the way user code would: the snapshot must see it.
SWITCHES = {
    'sdpa flag': lambda: torch.backends.cuda.enable_flash_sdp(False),
    'sdpa order': _reordered,
    'cudnn.benchmark': lambda: setattr(torch.backends.cudnn, 'benchmark', True),
    'tf32 matmul': lambda: setattr(torch.backends.cuda.matmul, 'allow_tf32', True),
    'matmul precision': lambda: torch.set_float32_matmul_precision('medium'),
    'default dtype': lambda: torch.set_default_dtype(torch.float64),
    'grad mode': lambda: torch.set_grad_enabled(False),
    'threads': lambda: torch.set_num_threads(max(1, torch.get_num_threads() - 1) if
                                            torch.get_num_threads() > 1 else 2),
    'dynamo config': lambda: setattr(torch._dynamo.config, 'cache_size_limit', 1234),
    'inductor config': lambda: setattr(torch._inductor.config, 'max_autotune', True),
}


@pytest.mark.parametrize('switch', list(SWITCHES))
def test_snapshot_sees_every_switch(switch):
    import torch._dynamo  # noqa: F401
    import torch._inductor.config  # noqa: F401
    before = torch_settings()
    saved = dict(dtype=torch.get_default_dtype(), grad=torch.is_grad_enabled(),
                 threads=torch.get_num_threads(), precision=torch.get_float32_matmul_precision(),
                 benchmark=torch.backends.cudnn.benchmark,
                 tf32=torch.backends.cuda.matmul.allow_tf32, sdpa=sdpa_state(),
                 fp32_precision=getattr(torch.backends.cuda.matmul, 'fp32_precision', None),
                 dynamo=torch._dynamo.config.cache_size_limit,
                 autotune=torch._inductor.config.max_autotune)
    try:
        SWITCHES[switch]()
        assert settings_diff(before, torch_settings()), switch
    finally:
        torch.set_default_dtype(saved['dtype'])
        torch.set_grad_enabled(saved['grad'])
        torch.set_num_threads(saved['threads'])
        torch.set_float32_matmul_precision(saved['precision'])
        torch.backends.cudnn.benchmark = saved['benchmark']
        torch.backends.cuda.matmul.allow_tf32 = saved['tf32']
        if saved['fp32_precision'] is not None:  # torch >= 2.9: the two setters above leave
            torch.backends.cuda.matmul.fp32_precision = saved['fp32_precision']  # 'ieee'
        set_sdpa_state(*saved['sdpa'])
        torch._dynamo.config.cache_size_limit = saved['dynamo']
        torch._inductor.config.max_autotune = saved['autotune']
    assert settings_diff(before, torch_settings()) == {}
