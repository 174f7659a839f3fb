"""The one exit path of the tools: a known failure becomes one line ``<tool>: error: ...``.

Exit code 2: bad input (every ``UserError``, ``mmpatch/utils/errors.py``: a config that does not
load, unknown keys or bad values in ``--cfg-options``, a patch size that does not fit the crop,
missing or unreadable data, checkpoint or config files, a work dir that holds another run's
checkpoints; a bad dataset file, ``DataError``; a checkpoint that does not fit the model, its keys
listed below the line). Exit code 1: training failed (CUDA out of memory, a non-finite loss), the
fix in the line. Any other exception is a bug and keeps its traceback; ``--debug`` (or
``MMPATCH_DEBUG=1``) prints the traceback of the one-line errors too.
"""
import os
import sys
import traceback

from mmpatch.datasets.sample_checks import DataError, original_message
from mmpatch.engine.finite_loss_hook import NonFiniteLossError
from mmpatch.models.weights.checkpoint_filter import CheckpointMismatchError
from mmpatch.utils.errors import UserError


class CliError(UserError):
    """A user error found by the train / test entry points: one line, without traceback."""


class TrainingFailure(Exception):
    """Training could not go on (e.g. out of memory): reported as one line, exit code 1."""


def known_failure(err):
    """``(message, exit code)`` of a failure reported as one line, None for any other error."""
    if isinstance(err, DataError):  # may come from a DataLoader worker, wrapped
        return original_message(err), 2
    if isinstance(err, (UserError, CheckpointMismatchError)):
        return str(err), 2
    if isinstance(err, (TrainingFailure, NonFiniteLossError)):
        return str(err), 1
    return None


def debug_requested(argv=None):
    """``--debug`` among the arguments (``sys.argv`` by default), or ``MMPATCH_DEBUG`` set (not 0)."""
    argv = sys.argv[1:] if argv is None else argv
    return '--debug' in argv or os.environ.get('MMPATCH_DEBUG', '0') not in ('', '0')


def run(main, prog, argv=None):
    """Run ``main``; a known failure becomes ``prog: error: message`` on stderr (exit code from
    ``known_failure``), without a traceback unless ``debug_requested(argv)`` (``argv``: the
    tool's arguments, ``sys.argv[1:]`` by default); other errors (bugs) propagate with theirs."""
    try:
        main()
    except Exception as e:
        failure = known_failure(e)
        if failure is None:
            raise
        fail(prog, *failure, argv=argv)


class ToolExit(SystemExit):
    """``SystemExit`` with the exit code (``.code``) whose text is the error line (so code that
    catches it, e.g. ``pytest.raises(SystemExit, match=...)``, sees the message)."""

    def __init__(self, code, line):
        super().__init__(code)
        self.line = line

    def __str__(self):
        return self.line


def fail(prog, message, code, argv=None):
    """The one exit path of a user error: ``prog: error: message`` on stderr, exit ``code``; when
    called while an exception is handled, its traceback first if ``debug_requested(argv)``."""
    if sys.exc_info()[0] is not None and debug_requested(argv):
        traceback.print_exc()
    line = f'{prog}: error: {message}'
    print(line, file=sys.stderr, flush=True)
    raise ToolExit(code, line)
