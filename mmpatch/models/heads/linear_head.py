"""The paper's decoder-free head: a norm and one linear layer per token to the classes."""
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS

from ..layers.layer_norm_2d import LayerNorm2d  # noqa: F401  (registers 'LN2d')
from ..losses.bilinear_matmul import resize_bilinear_matmul
from ..losses.pixel_accuracy import pixel_accuracy
from ..losses.upsample_cross_entropy import fused_ce_supported, upsample_cross_entropy


@MODELS.register_module()
class LinearHead(BaseDecodeHead):
    """Norm + 1x1 conv (``conv_seg``) on the stride-p backbone map; no other layer.

    The logits stay at stride ``p``; mmseg's loss and predict paths resize them
    bilinearly to the label / image size, as for every decode head. Parameters:
    ``C * num_classes + num_classes`` (``conv_seg``) plus the norm's ``2 * C``.

    Args:
        in_channels: channels of the selected backbone map (``in_index``);
            with ``input_transform='resize_concat'`` a list, summed.
        channels: width seen by ``conv_seg``; there is no layer to change it,
            so it must equal the (summed) input channels. ``None`` takes it.
        norm_cfg: norm applied before the dropout and ``conv_seg``;
            default ``dict(type='LN2d')``, ``None`` for none.
        fast_loss: the training loss path of ``BaseDecodeHead.loss_by_feat`` with two
            substitutions of equal value: the bilinear resize of the logits to the label
            size as two matrix products (``resize_bilinear_matmul``: no atomic-add backward)
            and the accuracy by argmax (``pixel_accuracy``: no top-k, no host sync).
            ``False``: mmseg's own ``loss_by_feat``. ``'fused'``: where the loss is one
            mmseg ``CrossEntropyLoss`` (softmax, mean, no class weights), no sampler, on CUDA,
            and the logits are upsampled to the labels (each block of output columns reads at
            most 64 source columns: ``fused_ce_supported``), the resize, loss and accuracy in one
            Triton kernel that never holds the full-size logits (``upsample_cross_entropy``);
            elsewhere as ``True``.
        **kwargs: ``BaseDecodeHead`` arguments (num_classes, dropout_ratio,
            in_index, loss_decode, align_corners, ...).
    """

    def __init__(self, in_channels, channels=None, norm_cfg=dict(type='LN2d'), fast_loss=True,
                 **kwargs):
        if kwargs.get('input_transform') == 'resize_concat':
            width = sum(in_channels)
        elif isinstance(in_channels, int):
            width = in_channels
        else:
            raise ValueError(f'LinearHead takes one input map: in_channels must be an int '
                             f'(or a list with input_transform="resize_concat"), '
                             f'got {in_channels!r}')
        if channels is not None and channels != width:
            raise ValueError(f'LinearHead has no layer that changes the width: channels '
                             f'({channels}) must equal the input channels ({width}); '
                             f'leave channels=None')
        super().__init__(in_channels, width, norm_cfg=norm_cfg, **kwargs)
        self.norm = build_norm_layer(norm_cfg, width)[1] if norm_cfg is not None else None
        if fast_loss not in (True, False, 'fused'):
            raise ValueError(f"LinearHead fast_loss must be True, False or 'fused', got {fast_loss!r}")
        self.fast_loss = fast_loss

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        if self.norm is not None:
            x = self.norm(x)
        return self.cls_seg(x)

    def loss_by_feat(self, seg_logits, batch_data_samples):
        """``BaseDecodeHead.loss_by_feat`` with the substitutions of ``fast_loss``."""
        if not self.fast_loss:
            return super().loss_by_feat(seg_logits, batch_data_samples)
        seg_label = self._stack_batch_gt(batch_data_samples)
        fused_loss = self._fused_loss(seg_logits, seg_label)
        if fused_loss is not None:
            return fused_loss
        seg_logits = resize_bilinear_matmul(seg_logits, seg_label.shape[2:], self.align_corners)
        seg_weight = None if self.sampler is None else self.sampler.sample(seg_logits, seg_label)
        seg_label = seg_label.squeeze(1)
        loss = dict()
        for loss_decode in self._loss_modules():
            value = loss_decode(seg_logits, seg_label, weight=seg_weight,
                                ignore_index=self.ignore_index)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        loss['acc_seg'] = pixel_accuracy(seg_logits, seg_label, self.ignore_index)
        return loss

    def _fused_loss(self, seg_logits, seg_label):
        """The losses by ``upsample_cross_entropy``, or None where it does not apply."""
        losses = self._loss_modules()
        if self.fast_loss != 'fused' or self.sampler is not None or len(losses) != 1:
            return None
        (ce,) = losses
        if not (isinstance(ce, CrossEntropyLoss) and not ce.use_sigmoid and not ce.use_mask
                and ce.class_weight is None and ce.reduction == 'mean'
                and fused_ce_supported(seg_logits, seg_label.shape[-1], self.align_corners)):
            return None
        loss, acc = upsample_cross_entropy(seg_logits, seg_label.squeeze(1), self.align_corners,
                                           self.ignore_index, ce.avg_non_ignore)
        return {ce.loss_name: ce.loss_weight * loss, 'acc_seg': acc}

    def _loss_modules(self):
        return list(self.loss_decode) if isinstance(self.loss_decode, nn.ModuleList) \
            else [self.loss_decode]
