"""The modules behind ``benchmark.py`` and ``check.py`` (not part of the mmpatch package)."""
import importlib
import sys


def dispatch(tool, subcommands, doc, argv=None):
    """Run ``subcommands[argv[0]] = (module of perfkit, function)`` on the remaining arguments.

    The module is imported on use, so that a row's fresh process imports only what its row
    needs; no or an unknown sub-command exits with the usage and ``doc``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in subcommands:
        sys.exit(f'usage: {tool} {{{",".join(subcommands)}}} [options]\n\n{doc}')
    module, function = subcommands[argv[0]]
    return getattr(importlib.import_module(f'perfkit.{module}'), function)(argv[1:])
