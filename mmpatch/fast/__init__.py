"""The fast data path: opt-in replacements for mmseg's training data path, each kept because it
made ViT-B p16 training measurably faster on one GPU (docs/segmentation.md, "Fast data path").

Nothing here is used by the default configs; ``configs/fast/*.py`` turn it on (their
``custom_imports`` import this package, which registers):

- ``stack_seg_collate`` (mmengine FUNCTIONS): a batch leaves the loader workers as two tensors;
- ``StackedSegDataPreProcessor`` (MODELS): ``SegDataPreProcessor`` that takes those batches and
  can prepare the next one ahead (``prefetch``);
- ``PrefetchBatchHook`` (HOOKS): prepares the next batch before the losses are read back;
- ``HostLogEncoderDecoder`` (MODELS): ``EncoderDecoder`` whose log values reach the host without
  waiting for the update;
- ``FastRandomCrop``, ``FastPhotoMetricDistortion`` (TRANSFORMS): mmseg's two transforms, same
  outputs for the same random state, faster on uint8 images.

Each gives what the stock class gives (tested against it); only when the work is done changes.
"""
from .fast_photo_metric_distortion import FastPhotoMetricDistortion  # noqa: F401
from .fast_random_crop import FastRandomCrop  # noqa: F401
from .host_log_encoder_decoder import (HostLogEncoderDecoder, copy_log_vars,  # noqa: F401
                                       host_log_vars, train_step_host_log)
from .prefetch_batch_hook import PrefetchBatchHook  # noqa: F401
from .stack_seg_collate import stack_seg_collate  # noqa: F401
from .stacked_seg_data_preprocessor import StackedSegDataPreProcessor  # noqa: F401
