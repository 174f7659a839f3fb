"""Per-sample checks that turn bad files into one clear ``DataError``.

Without them a missing or undecodable file stops training deep in a loading
transform (often without its name: mmseg's label loader fails with
``'NoneType' object has no attribute ...``), and label values outside the
classes pass silently (the loss then indexes past the logits, or mIoU counts
them nowhere). ``SampleChecksMixin`` runs a dataset's pipeline transform by
transform, as mmengine's ``Compose`` does, and

- wraps an error raised by a loading transform (``Load*``) in ``DataError``
  naming the file, the sample and the fix;
- checks the label map as soon as a transform has loaded it
  (``gt_seg_map``): values must be classes ``0..num_classes-1`` or the
  dataset's ``ignore_index``.

With DataLoader workers the error crosses processes inside PyTorch's wrapper;
``original_message`` recovers the one line.
"""
import os.path as osp

import numpy as np


class DataError(ValueError):
    """A dataset file that cannot be used as it is."""


def original_message(err):
    """``err``'s own message, also when PyTorch re-raised it from a DataLoader worker."""
    text = str(err).rstrip()
    if 'Original Traceback' not in text:
        return text
    last = text.splitlines()[-1]
    marker = f'{type(err).__name__}: '
    return last.split(marker, 1)[1] if marker in last else last


def _failing_file(transform, results, err):
    """The file a loading transform failed on: a missing one, else the one its name says it loads."""
    paths = [p for p in (results.get('img_path'), results.get('seg_map_path')) if p]
    missing = [p for p in paths if not osp.exists(p)]
    if missing:
        return missing[0], 'missing file'
    named = [p for p in paths if str(p) in str(err)]
    if named:
        return named[0], 'cannot read'
    if 'Annotation' in type(transform).__name__ and results.get('seg_map_path'):
        return results['seg_map_path'], 'cannot read'
    return (paths[0] if paths else '<unknown file>'), 'cannot read'


def unreadable_file_error(dataset, idx, transform, results, err):
    path, problem = _failing_file(transform, results, err)
    detail = str(err).strip().splitlines()[0].replace(str(path), 'it') if str(err).strip() else 'no message'
    return DataError(
        f'{type(dataset).__name__}: {problem} {path} (sample {idx}, {type(transform).__name__}: '
        f'{type(err).__name__}: {detail}); '
        'fix: restore or replace the file, or remove the sample (image and label map) from the dataset')


def check_label_values(seg_map, num_classes, ignore_index, path, reduce_zero_label=False):
    """Raise ``DataError`` naming ``path`` and the values when ``seg_map`` holds non-classes."""
    seg_map = np.asarray(seg_map)
    bad = (seg_map >= num_classes) & (seg_map != ignore_index)
    if np.issubdtype(seg_map.dtype, np.signedinteger):
        bad |= seg_map < 0
    if not bad.any():
        return
    values = np.unique(seg_map[bad]).tolist()
    shown = ', '.join(map(str, values[:10])) + (', ...' if len(values) > 10 else '')
    in_file = (f' (file values {", ".join(str(v + 1) for v in values[:10])}: reduce_zero_label maps '
               'file value v to class v-1)') if reduce_zero_label else ''
    raise DataError(
        f'label map {path} has values {shown}{in_file} outside the {num_classes} classes '
        f'(0..{num_classes - 1}, ignore {ignore_index}); fix: set num_classes (dataset and '
        f'decode_head) to the classes the labels use, or set those pixels to {ignore_index} (ignored)')


class SampleChecksMixin:
    """Mix into an mmengine dataset (before the dataset class) to check every sample it loads."""

    def prepare_data(self, idx):
        results = self.get_data_info(idx)
        labels_checked = False
        for transform in self.pipeline.transforms:
            if type(transform).__name__.startswith('Load'):
                try:
                    results = transform(results)
                except Exception as err:
                    raise unreadable_file_error(self, idx, transform, results, err) from err
            else:
                results = transform(results)
            if results is None:  # as Compose: the sample is dropped
                return None
            if not labels_checked and isinstance(results, dict) and 'gt_seg_map' in results:
                check_label_values(results['gt_seg_map'], len(self.metainfo['classes']),
                                   getattr(self, 'ignore_index', 255), results.get('seg_map_path'),
                                   bool(results.get('reduce_zero_label')))
                labels_checked = True
        return results
