"""The decoder-dependence sweep (mmpatch/sweep/cli.py): train + test every (config, seed) cell,
then the report with the verdicts. ``python tools/sweep.py --help`` for the options.

    python tools/sweep.py                 # the toy default, as `make demo` runs it
"""
from mmpatch.sweep.cli import main

if __name__ == '__main__':
    main()
