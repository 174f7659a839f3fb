"""mmseg training transforms with the same outputs as mmseg's for the same random state, faster."""
from .fast_photo_metric_distortion import FastPhotoMetricDistortion  # noqa: F401
from .fast_random_crop import FastRandomCrop  # noqa: F401
