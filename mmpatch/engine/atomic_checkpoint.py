"""Checkpoints that a kill during the save cannot truncate, and finding the newest complete one.

mmengine serializes a checkpoint in memory and then writes the bytes straight
into ``iter_N.pth``; a process killed during that write leaves a truncated file
(and a truncated ``iter_N.pth`` overwrites a good one of the same name).
``AtomicCheckpointHook`` is mmengine's ``CheckpointHook`` writing through
``AtomicLocalBackend``: the bytes go to ``<name>.tmp``, are flushed to disk,
and ``os.replace`` then swaps the complete file in. ``last_checkpoint`` is
written by mmengine only after that, so it names a complete file.
The configs declare it as their checkpoint hook
(``default_hooks.checkpoint = dict(type='AtomicCheckpointHook', ...)`` in the
``configs/_base_/schedules`` files).

``last_checkpoint`` reads mmengine's ``<work_dir>/last_checkpoint`` pointer (the
one reader of it in mmpatch). ``latest_complete_checkpoint`` is what
``--resume`` (no path) resumes from: the file the pointer names when it is a
complete checkpoint, else the newest complete ``*.pth`` in the work dir.
"""
import glob
import os
import os.path as osp
import zipfile

from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from mmpatch.utils.paths import is_remote

ATOMIC_BACKEND = 'atomic_local'
TMP_SUFFIX = '.tmp'


class AtomicLocalBackend(LocalBackend):
    """Local files whose ``put`` / ``put_text`` replace the target only once fully written."""

    def put(self, obj, filepath):
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        tmp = f'{filepath}{TMP_SUFFIX}'
        with open(tmp, 'wb') as f:
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)  # atomic on POSIX and Windows (same folder)

    def put_text(self, obj, filepath, encoding='utf-8'):
        self.put(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose local checkpoints are written atomically.

    Remote ``out_dir`` s and explicit ``backend_args`` / ``file_client_args``
    are left to mmengine. Leftover ``*.pth.tmp`` files of a killed run are
    removed when training starts.
    """

    def __init__(self, *args, out_dir=None, backend_args=None, file_client_args=None, **kwargs):
        if backend_args is None and file_client_args is None and not is_remote(out_dir):
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(*args, out_dir=out_dir, backend_args=backend_args,
                         file_client_args=file_client_args, **kwargs)

    def before_train(self, runner):
        super().before_train(runner)
        if runner.rank == 0 and not is_remote(self.out_dir):
            for tmp in glob.glob(osp.join(glob.escape(str(self.out_dir)), f'*.pth{TMP_SUFFIX}')):
                os.remove(tmp)
                print_log(f'removed the partial checkpoint {tmp} of an interrupted save',
                          logger='current')


def is_complete_checkpoint(path):
    """Whether ``path`` is a whole checkpoint file: torch's zip format ends with its directory."""
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return len(zf.namelist()) > 0
    except (zipfile.BadZipFile, OSError):
        return False


def last_checkpoint(work_dir):
    """The checkpoint mmengine's ``<work_dir>/last_checkpoint`` names, or None (no pointer, or an
    empty one). The file it names may be missing or incomplete: see ``latest_complete_checkpoint``."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


def latest_complete_checkpoint(work_dir):
    """The checkpoint ``last_checkpoint`` names if complete, else the newest complete ``*.pth``; or None."""
    named = last_checkpoint(work_dir)
    if named and is_complete_checkpoint(named):
        return named
    if named:
        print_log(f'{osp.join(work_dir, "last_checkpoint")} names {named}, which is missing or '
                  'incomplete; looking for the newest complete checkpoint', logger='current')
    candidates = sorted(glob.glob(osp.join(glob.escape(work_dir), '*.pth')), key=osp.getmtime, reverse=True)
    return next((c for c in candidates if is_complete_checkpoint(c)), None)
