"""Command-line arguments shared by ``python -m mmpatch.apis.train`` and ``... .test``."""
import os

from .config import CFG_OPTIONS_HELP, CfgOptionsAction

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_common_args(parser):
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics '
                        '(default: config work_dir, else work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, help=CFG_OPTIONS_HELP)
    parser.add_argument('--verbose', action='store_true', help="print mmengine's environment and "
                        'config dump and its hook list on the console too (always in the log file)')
    parser.add_argument('--debug', action='store_true', help='print the traceback of a one-line error '
                        '(as MMPATCH_DEBUG=1 does)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse(parser, argv):
    """``parser``'s arguments of ``argv``; sets ``LOCAL_RANK`` for mmengine when unset."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
