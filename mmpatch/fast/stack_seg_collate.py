"""A collate function that sends a segmentation batch from the loader workers as two tensors."""
from typing import Sequence

import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS


@FUNCTIONS.register_module()
def stack_seg_collate(data_batch: Sequence[dict]) -> dict:
    """``pseudo_collate``, with the images and the ``gt_sem_seg`` maps stacked into one tensor each.

    Each tensor a worker hands to the main process costs a file-descriptor round trip there
    (PyTorch's default sharing strategy) and a pinned copy: two per sample with
    ``pseudo_collate``, two per batch here. Label maps whose values fit travel as uint8 (8x
    fewer bytes than mmseg's int64).

    Returns ``pseudo_collate``'s ``dict(inputs, data_samples)``, except that where the images
    have one channel count and dtype, ``inputs`` is one (N, C, H, W) tensor of the batch's
    largest height and width, each image at the top left (the rest is filled by the data
    preprocessor), with ``img_shapes``, each image's (h, w); and where every sample has a
    ``gt_sem_seg`` the size of its image, those maps leave the samples for
    ``gt_sem_seg=dict(data=(N, 1, H, W) tensor, dtype=their dtype)``. Only
    ``StackedSegDataPreProcessor`` reads this (mmseg's ``SegDataPreProcessor`` would lose
    the labels): use the two together.
    """
    batch = pseudo_collate(data_batch)
    inputs, samples = batch['inputs'], batch.get('data_samples')
    if not all(torch.is_tensor(img) and img.ndim == 3 for img in inputs) or \
            len({(img.shape[0], img.dtype) for img in inputs}) != 1:
        return batch  # as pseudo_collate
    shapes = [tuple(img.shape[-2:]) for img in inputs]
    batch['inputs'] = _stack_top_left(inputs, shapes)
    batch['img_shapes'] = shapes
    if samples and all('gt_sem_seg' in s and tuple(s.gt_sem_seg.data.shape) == (1, *hw)
                       for s, hw in zip(samples, shapes)):
        seg = _stack_top_left([s.gt_sem_seg.data for s in samples], shapes)
        dtype = seg.dtype
        if not dtype.is_floating_point and seg.numel() and 0 <= seg.min() and seg.max() <= 255:
            seg = seg.to(torch.uint8)
        for sample in samples:
            del sample.gt_sem_seg
        batch['gt_sem_seg'] = dict(data=seg, dtype=dtype)
    return batch


def _stack_top_left(tensors, shapes):
    """(N, *tensors[0].shape[:-2], max h, max w), tensor i at the top left, the rest zero."""
    height, width = max(h for h, _ in shapes), max(w for _, w in shapes)
    out = tensors[0].new_zeros((len(tensors), *tensors[0].shape[:-2], height, width))
    for i, (tensor, (h, w)) in enumerate(zip(tensors, shapes)):
        out[i, ..., :h, :w] = tensor
    return out
