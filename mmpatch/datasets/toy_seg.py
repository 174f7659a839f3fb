"""``ToySegDataset``: the toy segmentation set of ``toy_scenes`` in mmseg.

ADE20K layout and convention (``reduce_zero_label=True``: file value 0 is
unlabelled and becomes 255, file values 1..K become classes 0..K-1), PNG
images. ``num_classes`` must match the generator's; when ``data_root`` holds
the generator's ``meta.json`` a mismatch is an error, and the set's scene
family (strokes, shape, control) names the classes. Every sample is checked
(``sample_checks.py``): unreadable files and out-of-range labels are named.
"""
import os.path as osp

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .sample_checks import DataError, SampleChecksMixin
from .toy_scenes import check_family, read_meta, toy_seg_metainfo


@DATASETS.register_module()
class ToySegDataset(SampleChecksMixin, BaseSegDataset):
    """Toy scenes of one family; classes say their role (``region_1``, ``stroke_2``, ``ring_2``, ...).

    Args:
        num_classes (int): foreground classes the set was generated with (default 8).
        family (str, optional): the set's scene family; by default the one in
            ``data_root``'s ``meta.json`` ('strokes' when there is none). Given
            and different from the meta's, it is an error.
        metainfo (dict, optional): explicit ``classes``/``palette``; by default
            derived from ``num_classes`` and the family like the generator does.
    """

    def __init__(self, num_classes=8, family=None, metainfo=None, img_suffix='.png', seg_map_suffix='.png',
                 reduce_zero_label=True, data_root=None, **kwargs):
        meta = read_meta(data_root) if data_root and osp.isdir(data_root) else None
        if meta is not None and meta.get('num_classes') != num_classes:
            n = meta.get('num_classes')
            raise DataError(f'ToySegDataset: {data_root} was generated with num_classes={n} but the dataset '
                            f'config says num_classes={num_classes}: make them agree; fix: --cfg-options '
                            + ' '.join(f'{s}_dataloader.dataset.num_classes={n}' for s in ('train', 'val', 'test'))
                            + f' model.decode_head.num_classes={n}, or regenerate the set with --num-classes '
                            f'{num_classes}')
        if meta is not None and family is not None and meta['family'] != family:
            raise DataError(f"ToySegDataset: {data_root} holds a {meta['family']} set but the dataset config "
                            f'says family={family!r}; fix: make them agree, or drop family from the config')
        family = check_family(family or (meta['family'] if meta is not None else 'strokes'))
        super().__init__(metainfo=metainfo or toy_seg_metainfo(num_classes, family), img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, reduce_zero_label=reduce_zero_label,
                         data_root=data_root, **kwargs)
