"""The fast loss path of LinearHead: matmul bilinear resize and argmax accuracy vs mmseg's."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.models.losses import accuracy

from mmpatch.models.heads.linear_head import LinearHead
from mmpatch.models.losses.bilinear_matmul import bilinear_weights, resize_bilinear_matmul
from mmpatch.models.losses.pixel_accuracy import pixel_accuracy


@pytest.mark.parametrize('align_corners', (False, True))
@pytest.mark.parametrize('in_hw,out_hw', (((4, 4), (64, 64)), ((5, 7), (30, 36)),
                                          ((9, 6), (4, 5)), ((1, 3), (6, 2)), ((8, 8), (8, 9))))
def test_resize_equals_interpolate_values_and_grads(in_hw, out_hw, align_corners):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *in_hw, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 3, *out_hw, dtype=torch.float64)
    ref = F.interpolate(x, out_hw, mode='bilinear', align_corners=align_corners)
    (ref_grad,) = torch.autograd.grad(ref, x, grad)
    ours = resize_bilinear_matmul(x, out_hw, align_corners)
    (our_grad,) = torch.autograd.grad(ours, x, grad)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(our_grad, ref_grad, rtol=0, atol=1e-10)


def test_same_size_is_identity_and_rows_sum_to_one():
    x = torch.randn(1, 2, 6, 6)
    assert resize_bilinear_matmul(x, (6, 6)) is x
    for align_corners in (False, True):
        w = bilinear_weights(48, 3, align_corners)
        torch.testing.assert_close(w.sum(1), torch.ones(48, dtype=torch.float64))
        assert ((w > 0).sum(1) <= 2).all()


def test_resize_rejects_other_ranks():
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        resize_bilinear_matmul(torch.randn(3, 4, 4), (8, 8))


def test_pixel_accuracy_matches_mmseg():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 10, 12)
    label = torch.randint(0, 6, (3, 10, 12))
    label[:, :3] = 255
    torch.testing.assert_close(pixel_accuracy(logits, label, 255),
                               accuracy(logits, label, ignore_index=255))
    perfect = F.one_hot(label.clamp(max=5), 6).permute(0, 3, 1, 2).float()
    assert pixel_accuracy(perfect, label).item() == 100.0
    with pytest.raises(ValueError, match='differ in batch or spatial size'):
        pixel_accuracy(logits, label[:, :5])


TWO_LOSSES = [dict(type='CrossEntropyLoss', loss_weight=1.0),
              dict(type='CrossEntropyLoss', loss_weight=0.5)]


@pytest.mark.parametrize('fast_loss,loss_decode', (
    (True, TWO_LOSSES),
    ('fused', dict(type='CrossEntropyLoss', loss_weight=0.7)),  # Triton's interpreter (conftest)
    ('fused', TWO_LOSSES)))  # two losses: the matmul path
def test_fast_loss_equals_mmseg_loss_path(fast_loss, loss_decode):
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')  # the heads build their losses in it
    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        label = torch.randint(0, 5, (1, 40, 48))
        label[:, :4] = 255
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label)))
    feats = (torch.randn(2, 16, 5, 6),)
    results = []
    for fast in (fast_loss, False):
        torch.manual_seed(1)
        head = LinearHead(in_channels=16, num_classes=5, fast_loss=fast, loss_decode=loss_decode)
        losses = head.loss(feats, samples, train_cfg=dict())
        grads = torch.autograd.grad(losses['loss_ce'], [head.conv_seg.weight, head.norm.weight])
        results.append((losses, grads))
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast.keys() == ref.keys() == {'loss_ce', 'acc_seg'}
    torch.testing.assert_close(fast['loss_ce'], ref['loss_ce'])
    torch.testing.assert_close(fast['acc_seg'], ref['acc_seg'])
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b)
