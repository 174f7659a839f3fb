"""mmseg's SegDataPreProcessor on whole batches: one copy, one normalisation, one pad."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS


@MODELS.register_module()
class StackedSegDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` (same arguments, same output) that also takes the batches of
    ``stack_seg_collate``: the images as one (N, C, H, W) tensor (``img_shapes``: each one's
    size) and the label maps taken out of the samples as one tensor, which it puts back on the
    device in their original dtype.

    A stacked training batch whose samples hold no pixel data but ``gt_sem_seg`` is converted,
    normalised and padded as one tensor, its label maps padded as one; any other batch (lists
    of images, edge or depth maps, inference) goes through mmseg's per-sample code.

    ``non_blocking`` (default True; mmseg's is False): the host does not wait for the copies
    to the GPU (they are stream-ordered, so the model still reads the copied data; from the
    loader's pinned memory they run while the host goes on).

    ``prefetch(data)`` prepares a training batch ahead of time (``PrefetchBatchHook``): the
    next ``forward(data, training=True)`` with that same object returns the result.
    """

    def __init__(self, *args, non_blocking: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._non_blocking = non_blocking
        self._prefetched = None  # (the batch object, its result)

    def prefetch(self, data: dict) -> None:
        """Preprocess training batch ``data`` now; ``forward(data, True)`` will return it."""
        self._prefetched = None  # forward must not hand back an older batch's result
        self._prefetched = (data, self.forward(data, training=True))

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and self._prefetched is not None and self._prefetched[0] is data:
            result, self._prefetched = self._prefetched[1], None
            return result
        inputs, samples = data['inputs'], data.get('data_samples')
        if not (training and torch.is_tensor(inputs) and samples is not None and not any(
                key in s for s in samples for key in ('gt_edge_map', 'gt_depth_map'))):
            return super().forward(self._unstacked(data), training)
        data = self.cast_data(data)
        inputs, samples = data['inputs'], data['data_samples']
        shapes = _image_shapes(data)
        stacked = data.pop('gt_sem_seg', None)
        seg = None if stacked is None else stacked['data'].to(stacked['dtype'])
        if self.channel_conversion and inputs.size(1) == 3:
            inputs = inputs.flip(1)  # mmseg's [2, 1, 0], without an index tensor to copy
        if self._enable_normalize:  # uint8 - float32 is float32: one kernel less than .float()
            inputs = inputs.float() if inputs.is_floating_point() else inputs
            inputs = (inputs - self.mean).div_(self.std)
        else:
            inputs = inputs.float()
        target = self._padded_size(inputs.shape[-2:])
        inputs = _pad_each(inputs, shapes, target, self.pad_val)
        if seg is not None:
            seg = _pad_each(seg, shapes, target, self.seg_pad_val)
        for i, (sample, (h, w)) in enumerate(zip(samples, shapes)):
            padding = (0, target[1] - w, 0, target[0] - h)
            if seg is not None:
                sample.gt_sem_seg = PixelData(data=seg[i])
            elif 'gt_sem_seg' in sample:  # as mmseg: padded by its image's padding
                sample.gt_sem_seg = PixelData(data=F.pad(sample.gt_sem_seg.data, padding,
                                                         value=self.seg_pad_val))
            sample.set_metainfo(dict(
                img_shape=torch.Size((h, w)),
                pad_shape=sample.gt_sem_seg.shape if 'gt_sem_seg' in sample else None,
                padding_size=padding))
        if self.batch_augments is not None:
            inputs, samples = self.batch_augments(inputs, samples)
        return dict(inputs=inputs, data_samples=samples)

    @staticmethod
    def _unstacked(data):
        """A stacked batch as ``pseudo_collate`` gives it: per-sample images and label maps,
        each cut to its image's size (mmseg's code path)."""
        data = dict(data)
        inputs, shapes = data['inputs'], _image_shapes(data)
        if not torch.is_tensor(inputs):
            return data
        stacked = data.pop('gt_sem_seg', None)
        if stacked is not None:
            seg = stacked['data'].to(stacked['dtype'])
            for sample, seg_map, (h, w) in zip(data['data_samples'], seg, shapes):
                sample.gt_sem_seg = PixelData(data=seg_map[:, :h, :w])
        data['inputs'] = [img[:, :h, :w] for img, (h, w) in zip(inputs, shapes)]
        return data

    def _padded_size(self, hw):
        """mmseg's ``stack_batch`` rule: ``size``, or the batch's largest size rounded up to
        ``size_divisor``."""
        if (self.size is None) == (self.size_divisor is None):
            raise ValueError(f'{type(self).__name__}: set exactly one of size and size_divisor '
                             f'for training, got size={self.size}, '
                             f'size_divisor={self.size_divisor}')
        if self.size is not None:
            return tuple(max(s, t) for s, t in zip(hw, self.size[-2:]))
        divisor = max(self.size_divisor, 1)
        return tuple(-(-s // divisor) * divisor for s in hw)


def _image_shapes(data):
    """Each image's (h, w), taken out of ``data``: ``img_shapes``, else the stack's size."""
    shapes, inputs = data.pop('img_shapes', None), data['inputs']
    if shapes is None and torch.is_tensor(inputs):  # e.g. default_collate: one size
        shapes = [tuple(inputs.shape[-2:])] * len(inputs)
    return shapes


def _pad_each(batch, shapes, target, value):
    """``batch`` (N, ..., H, W), sample i of size ``shapes[i]`` at the top left, with everything
    outside each sample set to ``value``, padded to ``target`` (h, w) at the bottom and right."""
    height, width = batch.shape[-2:]
    if (height, width) == tuple(target) and all(tuple(hw) == (height, width) for hw in shapes):
        return batch  # nothing to pad or fill (F.pad would copy)
    batch = F.pad(batch, (0, target[1] - width, 0, target[0] - height), value=value)
    for i, (h, w) in enumerate(shapes):
        if (h, w) != (height, width):  # a sample smaller than the stack
            batch[i, ..., h:, :] = value
            batch[i, ..., :, w:] = value
    return batch
