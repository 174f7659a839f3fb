"""mmseg's SegDataPreProcessor on whole batches: one copy, one normalisation, one pad."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS


@MODELS.register_module()
class StackedSegDataPreProcessor(SegDataPreProcessor):
    """``SegDataPreProcessor`` (same arguments, same output) that also takes the batches of
    ``stack_seg_collate``: the images as one (N, C, H, W) tensor and the label maps taken out of
    the samples as one tensor, which it puts back on the device in their original dtype.

    A training batch of stacked images whose samples hold no pixel data but ``gt_sem_seg`` is
    converted, normalised and padded as one tensor, and its label maps padded as one; any other
    batch (lists of images, edge or depth maps, inference) goes through mmseg's per-sample code.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        stacked_seg = self._restore_gt_sem_seg(data)
        inputs, samples = data['inputs'], data.get('data_samples')
        if not (training and torch.is_tensor(inputs) and samples is not None
                and all(set(s.keys()) & {'gt_edge_map', 'gt_depth_map'} == set() for s in samples)):
            if torch.is_tensor(inputs):
                data['inputs'] = list(inputs)
            return super().forward(data, training)
        if self.channel_conversion and inputs.size(1) == 3:
            inputs = inputs[:, [2, 1, 0]]
        inputs = inputs.float()
        if self._enable_normalize:
            inputs = (inputs - self.mean) / self.std
        img_shape = inputs.shape[-2:]
        padding = self._padding(img_shape)
        inputs = F.pad(inputs, padding, value=self.pad_val)
        if stacked_seg is None and all('gt_sem_seg' in s for s in samples) and \
                len({s.gt_sem_seg.shape for s in samples}) == 1:
            stacked_seg = torch.stack([s.gt_sem_seg.data for s in samples])
        if stacked_seg is not None:
            stacked_seg = F.pad(stacked_seg, padding, value=self.seg_pad_val)
        for i, sample in enumerate(samples):
            pad_shape = None
            if stacked_seg is not None:
                sample.gt_sem_seg = PixelData(data=stacked_seg[i])
            elif 'gt_sem_seg' in sample:
                sample.gt_sem_seg = PixelData(data=F.pad(sample.gt_sem_seg.data, padding,
                                                         value=self.seg_pad_val))
            if 'gt_sem_seg' in sample:
                pad_shape = sample.gt_sem_seg.shape
            sample.set_metainfo(dict(img_shape=img_shape, pad_shape=pad_shape,
                                     padding_size=padding))
        if self.batch_augments is not None:
            inputs, samples = self.batch_augments(inputs, samples)
        return dict(inputs=inputs, data_samples=samples)

    def _restore_gt_sem_seg(self, data):
        """The stacked label maps back into the samples (as views); the stack, or None."""
        stacked = data.pop('gt_sem_seg', None)
        if stacked is None:
            return None
        seg = stacked['data'].to(stacked['dtype'])
        for sample, seg_map in zip(data['data_samples'], seg):
            sample.gt_sem_seg = PixelData(data=seg_map)
        return seg

    def _padding(self, hw):
        """mmseg's ``stack_batch`` rule for a batch of one image size (left, right, top, bottom)."""
        if (self.size is None) == (self.size_divisor is None):
            raise ValueError(f'{type(self).__name__}: set exactly one of size and size_divisor '
                             f'for training, got size={self.size}, '
                             f'size_divisor={self.size_divisor}')
        if self.size is not None:
            target = self.size
        elif self.size_divisor > 1:
            target = [-(-s // self.size_divisor) * self.size_divisor for s in hw]
        else:
            target = hw
        return (0, max(target[-1] - hw[-1], 0), 0, max(target[-2] - hw[-2], 0))
