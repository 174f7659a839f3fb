"""Let ``torch.load(weights_only=True)`` read mmengine checkpoints, and nothing more.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``; mmengine 0.10.7
calls it without the argument, so resuming (and testing) a checkpoint that
mmengine wrote fails on the non-tensor objects it stores. A real checkpoint
(IterBasedTrainLoop, AdamW, PolyLR, AMP off; found with
``torch.serialization.get_unsafe_globals_in_checkpoint``) needs exactly:

* ``mmengine.logging.HistoryBuffer``: the logged scalars in ``message_hub``;
* ``numpy.ndarray``, ``numpy.core.multiarray._reconstruct``, ``numpy.dtype``
  and the dtype classes ``numpy.dtypes.Float64DType`` / ``Int64DType`` (what
  ``numpy.dtype('f8')`` really builds): the buffers' value and count arrays;
* ``numpy.core.multiarray.scalar``: numpy scalars in ``message_hub``
  (e.g. ``eta``);
* ``builtins.getattr``: ``HistoryBuffer.__getstate__`` stores its statistics
  methods, which pickle as ``getattr(HistoryBuffer, 'mean')``. A free
  ``getattr`` would reach any attribute of any allowed object, so that name is
  bound to ``history_buffer_statistic``, which resolves only those four methods.

Everything else stays refused. Registered on ``import mmpatch``.
"""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.utils import digit_version

HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_statistic(owner, name):
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods (the only use in checkpoints)."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'weights-only load refuses getattr({owner!r}, {name!r}): '
                                 'only HistoryBuffer statistics methods are allowed')


def mmengine_checkpoint_globals():
    """The plain globals (their own module path) an mmengine checkpoint holds."""
    multiarray = np.core.multiarray
    dtype_classes = [type(np.dtype(np.float64)), type(np.dtype(np.int64))]  # numpy.dtypes.*DType
    return [HistoryBuffer, np.ndarray, np.dtype, *dtype_classes, multiarray._reconstruct, multiarray.scalar]


def register_mmengine_safe_globals():
    """Allow-list the above for weights-only loads; a no-op on torch without ``add_safe_globals``."""
    serialization = torch.serialization
    if not hasattr(serialization, 'add_safe_globals'):  # torch < 2.4: weights_only is opt-in
        return False
    serialization.add_safe_globals(mmengine_checkpoint_globals())
    # (object, name) entries exist since torch 2.6, the release that made weights_only the default
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        serialization.add_safe_globals([(history_buffer_statistic, 'builtins.getattr')])
    return True


register_mmengine_safe_globals()
