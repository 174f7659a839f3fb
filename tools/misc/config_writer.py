"""The command line shared by the config generators (tools/misc/make_*_configs.py).

Each generator renders its files as ``{relative path: text}``; ``main`` writes the ones that
differ from the committed files, or with ``--check`` only names them and exits 1. The
generators import this module inside their ``main`` only, so a test can load one with
``runpy.run_path`` and call its renderers without it.
"""
import argparse
import os
import os.path as osp
import sys


def main(configs, out_dir, tool, doc, argv=None):
    """Write (or with ``--check`` compare) ``configs`` under ``out_dir``; ``tool``: the
    generator's path as the user runs it, named in the message that asks for a re-run."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='only compare, write nothing')
    args = ap.parse_args(argv)
    stale = []
    for name, text in configs.items():
        path = osp.join(out_dir, name)
        current = open(path).read() if osp.isfile(path) else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
    verb = 'differ from the generator' if args.check else 'written'
    print(f'{len(stale)} of {len(configs)} configs {verb}'
          + (f': {", ".join(stale)}' if stale else ''))
    if args.check and stale:
        sys.exit(f'run: python {tool}')
