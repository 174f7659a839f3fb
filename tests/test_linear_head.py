"""LinearHead: parameter count, shapes, and training / inference inside mmseg's EncoderDecoder."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mmpatch.models  # noqa: F401  (registers the models)
from mmpatch.models.heads.linear_head import LinearHead


class DummyPlainBackbone(nn.Module):
    """Stand-in for a plain backbone: one stride-p map (B, C, ceil(H/p), ceil(W/p))."""

    def __init__(self, patch_size=4, embed_dims=16):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dims, patch_size, patch_size)

    def forward(self, x):
        p = self.patch_size
        x = nn.functional.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        return (self.proj(x),)


def head_params(channels, num_classes, norm=True):
    return channels * num_classes + num_classes + (2 * channels if norm else 0)


@pytest.mark.parametrize('channels,num_classes', ((768, 150), (16, 5), (256, 150)))
def test_param_count_is_one_linear_layer_plus_norm(channels, num_classes):
    head = LinearHead(in_channels=channels, num_classes=num_classes)
    assert sum(p.numel() for p in head.parameters()) == head_params(channels, num_classes)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [head.conv_seg] and head.conv_seg.kernel_size == (1, 1)
    no_norm = LinearHead(in_channels=channels, num_classes=num_classes, norm_cfg=None)
    assert sum(p.numel() for p in no_norm.parameters()) == head_params(channels, num_classes, False)


def test_paper_none_decoder_size():
    # Base (768) on ADE20K (150 classes): ~0.1M, the paper's "0.2M" linear layer
    n = sum(p.numel() for p in LinearHead(in_channels=768, num_classes=150).parameters())
    assert n == 768 * 150 + 150 + 2 * 768 and 0.1e6 < n < 0.2e6


def test_forward_keeps_the_stride_p_grid():
    head = LinearHead(in_channels=16, num_classes=7, in_index=-1)
    feats = (torch.randn(2, 8, 5, 6), torch.randn(2, 16, 5, 6))
    assert head(feats).shape == (2, 7, 5, 6)


def test_resize_concat_sums_the_inputs():
    head = LinearHead(in_channels=[8, 16], in_index=[0, 1], input_transform='resize_concat',
                      num_classes=3)
    assert head.conv_seg.in_channels == 24
    assert head((torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2))).shape == (1, 3, 4, 4)


def test_bad_channels_raise():
    with pytest.raises(ValueError, match='channels .* must equal the input channels'):
        LinearHead(in_channels=16, channels=32, num_classes=3)
    with pytest.raises(ValueError, match='one input map'):
        LinearHead(in_channels=[16, 16], num_classes=3)


def make_batch(n=2, size=(30, 36), num_classes=4):
    """Images whose size p does not divide, with random labels (incl. ignore pixels)."""
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, *size), dtype=torch.uint8))
        label = torch.randint(0, num_classes, (1, *size))
        label[:, :2] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=size, ori_shape=size, pad_shape=size))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('patch_size', (1, 4, 8))
def test_in_encoder_decoder_loss_and_predict(patch_size):
    num_classes = 4
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.7, 116.3, 103.5],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255, size_divisor=8),
        backbone=dict(type=DummyPlainBackbone, patch_size=patch_size, embed_dims=16),
        decode_head=dict(type='LinearHead', in_channels=16, num_classes=num_classes,
                         dropout_ratio=0.0, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=ConfigDict(), test_cfg=ConfigDict(mode='whole'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
    data = model.data_preprocessor(make_batch(num_classes=num_classes), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) >= {'decode.loss_ce', 'decode.acc_seg'}
    assert losses['decode.loss_ce'].isfinite() and losses['decode.loss_ce'] > 0
    losses['decode.loss_ce'].backward()
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0
    assert model.backbone.proj.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(make_batch(num_classes=num_classes), training=False)
        preds = model(**data, mode='predict')
    for pred in preds:
        assert pred.seg_logits.data.shape == (num_classes, 30, 36)
        assert pred.pred_sem_seg.data.shape == (1, 30, 36)
        assert pred.pred_sem_seg.data.max() < num_classes


@pytest.mark.parametrize('backbone_type', ('PatchViT', 'PatchMamba'))
def test_on_real_backbones_loss_and_predict(backbone_type):
    arch = dict(embed_dims=32, num_layers=2,
                **(dict(num_heads=2) if backbone_type == 'PatchViT' else dict(headdim=16)))
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.7, 116.3, 103.5],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True, size_divisor=4),
        backbone=dict(type=backbone_type, arch=arch, patch_size=2, img_size=32),
        decode_head=dict(type='LinearHead', in_channels=32, num_classes=4),
        train_cfg=ConfigDict(), test_cfg=ConfigDict(mode='whole'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg)
    data = model.data_preprocessor(make_batch(size=(30, 36)), training=True)
    loss = model(**data, mode='loss')['decode.loss_ce']
    loss.backward()
    assert loss.isfinite() and model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(make_batch(size=(30, 36)), training=False),
                      mode='predict')
    assert preds[0].pred_sem_seg.data.shape == (1, 30, 36)
