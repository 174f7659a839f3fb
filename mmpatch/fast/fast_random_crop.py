"""mmseg's ``RandomCrop`` with the category-ratio check counting labels by histogram."""
import numpy as np
from mmcv.transforms.utils import cache_randomness
from mmseg.datasets.transforms import RandomCrop
from mmseg.registry import TRANSFORMS


def label_counts(seg_map: np.ndarray, ignore_index: int) -> np.ndarray:
    """Pixel count of each label present in ``seg_map`` but ``ignore_index``, in label order.

    What ``np.unique(seg_map, return_counts=True)`` gives with the ignored label dropped; for
    uint8 maps one ``np.bincount`` pass instead of a sort (~20x faster on 512 x 512).
    """
    if seg_map.dtype == np.uint8:
        counts = np.bincount(seg_map.ravel(), minlength=256)
        if 0 <= ignore_index < 256:
            counts[ignore_index] = 0
        return counts[counts > 0]
    labels, counts = np.unique(seg_map, return_counts=True)
    return counts[labels != ignore_index]


@TRANSFORMS.register_module()
class FastRandomCrop(RandomCrop):
    """``RandomCrop`` (same arguments) whose ``cat_max_ratio`` retries count labels by histogram.

    mmseg sorts the cropped label map (``np.unique``) for every one of up to 10 candidate crops;
    ``label_counts`` gives the same counts in one pass. Same random draws in the same order, so
    the same crop for the same NumPy random state (tested against mmseg's).
    """

    def _random_bbox(self, img_hw) -> tuple:
        margin_h = max(img_hw[0] - self.crop_size[0], 0)
        margin_w = max(img_hw[1] - self.crop_size[1], 0)
        offset_h = np.random.randint(0, margin_h + 1)
        offset_w = np.random.randint(0, margin_w + 1)
        return offset_h, offset_h + self.crop_size[0], offset_w, offset_w + self.crop_size[1]

    @cache_randomness
    def crop_bbox(self, results: dict) -> tuple:
        img_hw = results['img'].shape[:2]
        bbox = self._random_bbox(img_hw)
        if self.cat_max_ratio < 1.:
            for _ in range(10):
                counts = label_counts(self.crop(results['gt_seg_map'], bbox), self.ignore_index)
                if len(counts) > 1 and np.max(counts) / np.sum(counts) < self.cat_max_ratio:
                    break
                bbox = self._random_bbox(img_hw)
        return bbox
