"""mmseg's ``PhotoMetricDistortion`` with its per-pixel maps of uint8 images as table lookups."""
import cv2
import mmcv
import numpy as np
from mmseg.datasets.transforms import PhotoMetricDistortion
from mmseg.registry import TRANSFORMS

_UINT8_VALUES = np.arange(256, dtype=np.uint8)


@TRANSFORMS.register_module()
class FastPhotoMetricDistortion(PhotoMetricDistortion):
    """``PhotoMetricDistortion`` (same arguments) that maps a uint8 image through 256-entry tables.

    mmseg's brightness, contrast and saturation pass every pixel through float32 (scale, shift,
    clip) and its hue through int64; on a uint8 image each is a function of the pixel's value
    alone. Here each map is computed once for the 256 values, with mmseg's own arithmetic, and
    applied with ``cv2.LUT``: the same image for the same NumPy random state (tested against
    mmseg's), without float arithmetic over every pixel. Other dtypes take mmseg's path.
    """

    def convert(self, img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
        if img.dtype != np.uint8:
            return super().convert(img, alpha, beta)
        return cv2.LUT(img, super().convert(_UINT8_VALUES, alpha, beta))

    def hue(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8:
            return super().hue(img)
        if np.random.randint(2):  # mmseg's draws, in its order
            img = mmcv.bgr2hsv(img)
            shift = np.random.randint(-self.hue_delta, self.hue_delta)
            table = ((_UINT8_VALUES.astype(int) + shift) % 180).astype(np.uint8)
            img[:, :, 0] = cv2.LUT(img[:, :, 0], table)
            img = mmcv.hsv2bgr(img)
        return img
