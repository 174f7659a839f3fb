"""The runner of a train / test run: the config's runner_type from the scope's RUNNERS, with a
console that shows the losses and metrics, not mmengine's dumps (the log file keeps them)."""
import contextlib
import itertools
import logging
import os.path as osp
import time
import warnings

from .errors import CliError


class QuietConsole(logging.Filter):
    """Keeps mmengine's dumps off the console (the log file in the work dir keeps them): the
    environment, the config (also saved as <work_dir>/<config>.py), the hook list, and three
    warnings about mmengine/mmseg internals a user cannot act on. ``--verbose`` shows them."""
    PREFIXES = ('\n' + '-' * 60 + '\nSystem environment:', 'Config:\n',
                'Hooks will be executed in the following order',
                'Distributed training is not used',  # a CPU / single-GPU run: nothing to act on
                'The prefix is not set in metric class',  # mmseg's IoUMetric: names its keys itself
                '"FileClient" will be deprecated',  # mmseg's own hooks and datasets still use it
                '"HardDiskBackend" is the alias of "LocalBackend"')

    def filter(self, record):
        return not str(record.msg).startswith(self.PREFIXES)


def _runner_class(cfg, scope, verbose, console):
    """The runner class (the config's runner_type, from the scope's RUNNERS), made quiet on the
    console unless ``verbose``: its logger gets ``QuietConsole`` on the console handler; with
    ``console`` False the console shows warnings and errors only (the log file keeps all)."""
    from mmengine.runner import Runner
    cls = Runner
    if 'runner_type' in cfg:
        registry = __import__(f'{scope}.registry', fromlist=['RUNNERS']).RUNNERS
        with registry.switch_scope_and_registry(cfg.get('_scope_')) as registry:
            cls = registry.get(cfg.runner_type) if isinstance(cfg.runner_type, str) else cfg.runner_type
        if cls is None:
            raise CliError(f'runner_type {cfg.runner_type!r} is not in the {scope} RUNNERS registry')
    if verbose and console:
        return cls

    def build_logger(self, *args, **kwargs):
        logger = cls.build_logger(self, *args, **kwargs)
        consoles = [h for h in logger.handlers
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in consoles:
            if not verbose and not any(isinstance(f, QuietConsole) for f in handler.filters):
                handler.addFilter(QuietConsole())
            if not console:
                handler.setLevel(logging.WARNING)
        return logger

    return type(cls.__name__, (cls,), dict(build_logger=build_logger, __module__=cls.__module__))


_RUNS = itertools.count()  # runs built in this process


def name_instances(cfg, run_index):
    """Give the second and later runs of one process their own mmengine instances.

    mmengine keeps loggers, message hubs and visualizers by name for the life of the process and
    hands an existing one back for a known name. A run's logger is named after
    ``experiment_name`` (``<config>_<second>`` by default) and mmseg's runtime names every
    visualizer 'visualizer', so a second ``train()`` / ``test()`` in one process (the sweep, a
    notebook, the tests) would log and write its scalars through the first run's handlers and
    folder. From the second run on, unless the config names them: ``experiment_name`` gets the
    run's index and the default-named visualizer takes that name. The first run, and so every
    ``tools/train.py`` / ``tools/test.py`` process, keeps mmengine's names."""
    if run_index == 0:
        return
    if cfg.get('experiment_name') is None:
        stem = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.experiment_name = f'{stem}_{time.strftime("%Y%m%d_%H%M%S")}_run{run_index}'
    visualizer = cfg.get('visualizer')
    if isinstance(visualizer, dict) and visualizer.get('name', 'visualizer') == 'visualizer':
        visualizer['name'] = cfg.experiment_name


def build_runner(cfg, scope, verbose=True, console=True):
    """Runner from the scope's RUNNERS registry when the config names a runner_type; quiet on the
    console (``QuietConsole``) unless ``verbose``; warnings and errors only unless ``console``;
    from the second run of a process on, with instances of its own (``name_instances``)."""
    name_instances(cfg, next(_RUNS))
    return _runner_class(cfg, scope, verbose, console).from_cfg(cfg)


# mmseg UserWarnings that are noise in every tools/train.py and tools/test.py run: none asks the
# user for a change (stdlib warnings, so filtered for the run only, by the entry points, not on import).
NOISE_WARNINGS = (
    r'``build_loss`` would be deprecated',  # mmseg's own decode heads call build_loss
    r'Default ``avg_non_ignore`` is False',  # mmseg's default, kept on purpose by the recipes
    r'`reduce_zero_label` will be deprecated',  # raised by LoadAnnotations(reduce_zero_label=...),
    #                                             as mmseg's own ADE20K configs set it
    r'The draw is False',  # the visualization hook when nothing is to be drawn: training, and
    #                        testing without --show/--show-dir (with them, draw is True: no warning)
)


@contextlib.contextmanager
def quiet_warnings(verbose):
    """Inside: ``NOISE_WARNINGS`` are not shown unless ``verbose``."""
    with warnings.catch_warnings():
        if not verbose:
            for message in NOISE_WARNINGS:
                warnings.filterwarnings('ignore', message=message, category=UserWarning)
        yield

