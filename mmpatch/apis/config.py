"""The one config loader of mmpatch's tools: the config file with ``--cfg-options`` merged.

The train / test entry points, the sweep (its report) and the benchmarks load configs through
``load_config``, so a config or an option that is wrong fails the same way everywhere: one line
naming the file, line or key (``config_checks``).
"""
import argparse
import copy
import os.path as osp
import warnings

from mmengine.config import Config, DictAction

from .config_checks import check_cfg_options, check_config_types, missing_config_message, read_config
from .errors import CliError

SCOPES = ('mmseg', 'mmdet')
CFG_OPTIONS_HELP = ('override settings of the config, key=value pairs (xxx=yyy), merged into it; '
                    'lists as key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]", no spaces')

# mmengine resolves `mmseg::`/`mmdet::` config paths through pkg_resources, whose deprecation
# warning (setuptools >= 81) would otherwise open every run and every one-line error.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)


class CfgOptionsAction(DictAction):
    """mmengine's DictAction, with a usage error (not a traceback) for an item without '='."""

    def __call__(self, parser, namespace, values, option_string=None):
        bad = [v for v in values if '=' not in v or v.startswith('=')]
        if bad:
            raise argparse.ArgumentError(self, f'{bad[0]!r} is not key=value (e.g. train_cfg.max_iters=20)')
        super().__call__(parser, namespace, values, option_string)


def parse_cfg_options(items):
    """``['key=value', ...]`` as ``--cfg-options`` parses them (a dict); ``CliError`` for an item
    that is not ``key=value``."""
    parser = argparse.ArgumentParser(prog='cfg-options', exit_on_error=False, add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={})
    try:
        return parser.parse_args(['--cfg-options', *items]).cfg_options if items else {}
    except argparse.ArgumentError as err:
        raise CliError(f'--cfg-options: {err.message}') from None


def load_config(path, cfg_options=None, launcher=None, type_overrides=None):
    """The config ``path`` (a file, or an mmengine ``Config``, copied) with ``cfg_options``
    merged (a dict, or ``key=value`` strings).

    Checks ``default_scope`` and, before merging, the options (``config_checks.check_cfg_options``;
    ``type_overrides``: types the caller sets afterwards, e.g. ``--amp``'s AmpOptimWrapper).
    ``launcher``: set as the config's ``launcher`` when given.
    """
    if isinstance(path, Config):
        cfg, path = copy.deepcopy(path), path.filename or 'the config'
    elif not osp.isfile(path):
        raise CliError(missing_config_message(path))
    else:
        cfg = read_config(path)
    if cfg_options is not None and not isinstance(cfg_options, dict):
        cfg_options = parse_cfg_options(list(cfg_options))
    scope = (cfg_options or {}).get('default_scope', cfg.get('default_scope'))
    if cfg_options and scope in SCOPES:
        check_cfg_options(cfg, cfg_options, scope, type_overrides)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope in SCOPES:
        check_config_types(cfg, scope, path)
    if scope is None:
        raise CliError(f"{path} sets no default_scope: add default_scope = 'mmseg' (segmentation) or "
                       "'mmdet' (detection), e.g. by inheriting mmseg::_base_/default_runtime.py")
    if scope not in SCOPES:
        raise CliError(f"{path}: default_scope {scope!r} is not supported; use one of {SCOPES}")
    if launcher is not None:
        cfg.launcher = launcher
    return cfg


def set_work_dir(cfg, work_dir, config):
    """``work_dir`` > config's work_dir > work_dirs/<config name> (``config``: its path or Config)."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        path = config.filename if isinstance(config, Config) else config
        if not path:
            raise CliError('the config has no file name and no work_dir: give work_dir')
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
