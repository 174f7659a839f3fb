"""Pixel accuracy of dense logits, as mmseg's ``accuracy`` (top-1) without top-k or host syncs."""
import torch
from torch import Tensor


@torch.no_grad()
def pixel_accuracy(logits: Tensor, label: Tensor, ignore_index: int = 255) -> Tensor:
    """Percent of non-ignored pixels whose argmax class equals the label, shape (1,).

    mmseg's ``accuracy(topk=1)`` gives the same value (up to its eps, and ties in the logits)
    but runs ``topk`` over the class dimension and masks with boolean indexing, which waits for
    the GPU. With no labelled pixel this returns 0 (mmseg's returns 100).

    Args:
        logits: (N, C, H, W) scores.
        label: (N, H, W) class indices, ``ignore_index`` where unlabelled.
    """
    if logits.shape[0] != label.shape[0] or logits.shape[2:] != label.shape[1:]:
        raise ValueError(f'pixel_accuracy: logits {tuple(logits.shape)} and label '
                         f'{tuple(label.shape)} differ in batch or spatial size')
    valid = label != ignore_index
    correct = (logits.argmax(1) == label) & valid
    return (correct.sum() * 100.0 / valid.sum().clamp(min=1)).float().reshape(1)
