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
  dataset's ``ignore_index``, and its size must be its image's;
- (detection) checks a loaded image against the size its annotation file gives.

When the file list is made (``load_data_list``, before training starts) it also
checks the split: a split without samples names the folder and, when the folder
holds images of another suffix than ``img_suffix``, that suffix and the fix; an
image without its label map (names differ, or the label map is missing) names
both files. The local file system only (``backend_args`` set: skipped).

With DataLoader workers the error crosses processes inside PyTorch's wrapper;
``original_message`` recovers the one line.
"""
import collections
import os
import os.path as osp

import numpy as np

from ..utils.errors import UserError


class DataError(UserError, ValueError):
    """A dataset file (or folder) that cannot be used as it is."""


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
    detail = str(err).strip().splitlines()[0] if str(err).strip() else 'no message'
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


def check_sizes(results, dataset, idx):
    """Raise ``DataError`` when a loaded label map (or, for detection, the annotation file's
    image size) does not match the loaded image."""
    img = results.get('img')
    if img is None:
        return
    img_hw = tuple(img.shape[:2])
    seg = results.get('gt_seg_map')
    if seg is not None and tuple(seg.shape[:2]) != img_hw:
        raise DataError(
            f'{type(dataset).__name__}: label map {results.get("seg_map_path")} is '
            f'{seg.shape[0]}x{seg.shape[1]} but its image {results.get("img_path")} is '
            f'{img_hw[0]}x{img_hw[1]} (sample {idx}); fix: give the label map its image\'s size '
            '(same height and width, one value per pixel), or remove the sample')
    if 'height' in results and 'width' in results and 'gt_seg_map' not in results:
        ann_hw = (results['height'], results['width'])
        if ann_hw != img_hw:
            raise DataError(
                f'{type(dataset).__name__}: image {results.get("img_path")} is {img_hw[0]}x{img_hw[1]} '
                f'but {getattr(dataset, "ann_file", "the annotation file")} gives {ann_hw[0]}x{ann_hw[1]} '
                f'(sample {idx}); fix: the annotation file\'s height and width must be the image\'s '
                '(regenerate it, or restore the image)')


def _suffix_counts(folder, limit=10000):
    """``Counter`` of the file suffixes in ``folder`` (recursive; at most ``limit`` files)."""
    counts = collections.Counter()
    for root, _, files in os.walk(folder):
        for name in files:
            counts[osp.splitext(name)[1].lower() or '(none)'] += 1
            if sum(counts.values()) >= limit:
                return counts
    return counts


def empty_split_message(dataset):
    """Why a dataset has no samples: the folder, the suffixes it holds, the fix."""
    name = type(dataset).__name__
    prefix = getattr(dataset, 'data_prefix', None) or {}
    folder = prefix.get('img_path') or prefix.get('img')
    suffix = getattr(dataset, 'img_suffix', None)
    ann_file = getattr(dataset, 'ann_file', None)
    if ann_file and osp.isfile(ann_file):
        return (f'{name}: {ann_file} lists no usable samples (with images under {folder}); fix: '
                'check the annotation file (and filter_cfg, which drops images without annotations)')
    if not folder or not osp.isdir(folder):
        return f'{name}: no samples, and the image folder {folder} does not exist; fix: check data_root and data_prefix'
    counts = _suffix_counts(folder)
    if not counts:
        return (f'{name}: the image folder {folder} is empty; fix: put the images (and their label maps) '
                'there, or point data_root / data_prefix.img_path at the split that has them')
    found = ', '.join(f"{n} '{s}'" for s, n in counts.most_common(3))
    common = counts.most_common(1)[0][0]
    return (f"{name}: no '*{suffix}' images in {folder} (img_suffix={suffix!r}); it holds {found} files; "
            f"fix: set the dataset's img_suffix='{common}' for each split it holds, e.g. --cfg-options "
            + ' '.join(f'{s}_dataloader.dataset.img_suffix={common}' for s in ('train', 'val', 'test')))


def missing_label_maps_message(dataset, missing, total):
    (img, seg), more = missing[0], len(missing) - 1
    folder = osp.dirname(seg)
    near = ''
    if osp.isdir(folder):
        stem = osp.splitext(osp.basename(img))[0]
        same_stem = [n for n in sorted(os.listdir(folder)) if osp.splitext(n)[0] == stem]
        if same_stem:
            near = f" ({folder} has {same_stem[0]}: seg_map_suffix={getattr(dataset, 'seg_map_suffix', None)!r} " \
                   f"does not match it)"
    return (f'{type(dataset).__name__}: {len(missing)} of {total} images have no label map: no {seg} for '
            f'{img}{near}{f" (and {more} more)" if more else ""}; fix: restore the label maps (same name as '
            'the image, seg_map_suffix), or remove those images from the split')


class SampleChecksMixin:
    """Mix into an mmengine dataset (before the dataset class) to check every sample it loads."""

    def _local(self):
        return not getattr(self, 'backend_args', None)

    def load_data_list(self):
        data_list = super().load_data_list()
        if not data_list and self._local():
            raise DataError(empty_split_message(self))
        if self._local():
            pairs = [(d['img_path'], d['seg_map_path']) for d in data_list if d.get('seg_map_path')]
            missing = [(img, seg) for img, seg in pairs if not osp.exists(seg)]
            if missing:
                raise DataError(missing_label_maps_message(self, missing, len(data_list)))
        return data_list

    def filter_data(self):
        data_list = super().filter_data()
        if not data_list and self._local():
            raise DataError(empty_split_message(self))
        return data_list

    def prepare_data(self, idx):
        results = self.get_data_info(idx)
        labels_checked = False
        for transform in self.pipeline.transforms:
            loading = type(transform).__name__.startswith('Load')
            if loading:
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
                check_sizes(results, self, idx)
                labels_checked = True
            elif loading and isinstance(results, dict) and 'gt_seg_map' not in results:
                check_sizes(results, self, idx)
        return results
