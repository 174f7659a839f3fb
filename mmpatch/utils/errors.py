"""Errors that mean bad input, not a bug: the CLI reports them as one line and exit code 2.

``tools/train.py``, ``tools/test.py``, ``tools/sweep.py`` and ``tools/data/make_toy.py`` end
any ``UserError`` with ``<tool>: error: <message>`` on stderr and exit code 2, without a
traceback (``--debug`` or ``MMPATCH_DEBUG=1`` shows it; see ``mmpatch/apis/errors.py``). Any
other exception is treated as a programming error and keeps its traceback.
"""


class UserError(Exception):
    """Bad input (command line, config, data, checkpoint); the message names it and the fix."""


class ConfigValueError(UserError, ValueError):
    """A config value a component cannot work with, raised when the component is built.

    A ``ValueError`` too, so code that catches the constructor's ``ValueError`` keeps working.
    mmengine's registry re-raises a constructor's exception unchanged, so the CLI still sees
    this type when the model is built inside the runner.
    """
