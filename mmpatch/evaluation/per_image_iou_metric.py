"""``PerImageIoUMetric``: mmseg's IoUMetric that can also save the per-image areas.

The saved file feeds :func:`mmpatch.sweep.stats.bootstrap_miou_ci` (a CI of the
mIoU over validation images). Use it in place of ``IoUMetric``::

    test_evaluator = dict(type='PerImageIoUMetric', iou_metrics=['mIoU'],
                          per_image_file='work_dirs/x/per_image.npz')
"""
import os
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class PerImageIoUMetric(IoUMetric):
    """IoUMetric (same arguments, same metrics) plus ``per_image_file``.

    Args:
        per_image_file (str, optional): .npz written by every ``compute_metrics``
            call (i.e. after every evaluation, on the main process, overwriting
            the previous one; as a val evaluator it holds the last validation).
            Arrays: ``intersect``, ``union``, ``pred_label``, ``label`` (int64,
            shape (N, C): IoUMetric's per-image areas in dataset order), ``classes``
            (str, (C,)) and, when every data sample has one, ``img_paths`` (str,
            (N,)). Its parent folder is created. None (default): nothing saved.
        **kwargs: IoUMetric's arguments.
    """

    def __init__(self, per_image_file: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.per_image_file = per_image_file

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """IoUMetric.process; with ``per_image_file`` each result also carries the
        sample's ``img_path`` (None if absent), removed again before computing."""
        start = len(self.results)
        super().process(data_batch, data_samples)
        if self.per_image_file is None:
            return
        added = len(self.results) - start
        if added == 0:  # format_only: no results
            return
        assert added == len(data_samples), (added, len(data_samples))
        for i, sample in enumerate(data_samples):
            path = sample.get('img_path') if hasattr(sample, 'get') else None
            self.results[start + i] = (*self.results[start + i], path)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        paths = None
        if results and len(results[0]) == 5:
            paths = [r[4] for r in results]
            results = [tuple(r[:4]) for r in results]
        if self.per_image_file is not None and results and not self.format_only:
            self.save_per_image(results, paths)
        return super().compute_metrics(results)

    def save_per_image(self, results, paths=None):
        """Write the per-image areas of ``results`` (IoUMetric's 4-tuples) to
        ``per_image_file`` (atomically: a temporary file, then a rename)."""
        areas = {name: np.stack([np.rint(np.asarray(r[k], dtype=np.float64)) for r in results])
                 .astype(np.int64)
                 for k, name in enumerate(('intersect', 'union', 'pred_label', 'label'))}
        arrays = dict(areas, classes=np.asarray(list(self.dataset_meta['classes']), dtype=str))
        if paths is not None and all(p is not None for p in paths):
            arrays['img_paths'] = np.asarray(paths, dtype=str)
        path = self.per_image_file
        parent = osp.dirname(osp.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'wb') as f:  # a file object: np.savez appends no '.npz'
            np.savez(f, **arrays)
        os.replace(tmp, path)
