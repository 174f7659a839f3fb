"""Config checks of the entry points that name the file, line or key: loading a config, ``--cfg-options``.

``read_config(path)`` loads a config; a config that cannot be loaded (a syntax error, a name
that is not defined, a ``_base_`` that does not exist, a ``custom_imports`` module that cannot
be imported) raises ``UserError`` naming the file (the base that is broken, when it is a base)
and the line.

``check_cfg_options(cfg, options)`` runs before the options are merged. mmengine merges any
key: a misspelt one is added next to the right one and fails (or is ignored) much later. Each
option's key is walked down the config:

- a key the config has: its value is checked against the config's (a number stays a number,
  unless the constructor that takes it declares or defaults to a string);
- a key the config lacks is accepted when the object it lands in can take it: a dict with a
  ``type`` takes the parameters of that class's constructor (through ``**kwargs`` to its base
  classes' constructors, as OpenMMLab classes pass them; a class whose ``**kwargs`` reach no
  named parameters takes any key); ``train_cfg`` / ``val_cfg`` / ``test_cfg`` without a
  ``type`` are mmengine's default loops; a dataloader takes ``torch.utils.data.DataLoader``'s
  arguments; ``randomness`` and ``env_cfg`` take what mmengine's Runner reads from them; the
  top level takes the Runner's arguments; a new entry among typed siblings
  (``default_hooks.<name>``) needs its own ``type``; other dicts without a type (a model's
  ``train_cfg``, ...) take any key;
- ``<...>.type=NAME`` must name a class of the registry that the old type came from.

Anything else is an unknown key: listed with the nearest valid ones (``difflib``). A key that
only code of your own reads can be defined in the config first: keys the config has are never
unknown.
"""
import difflib
import importlib
import inspect
import os
import os.path as osp

from ..utils.errors import UserError

# top-level keys read besides the Runner's arguments: by the Runner (self.cfg.get), the CLI, mmengine
TOP_LEVEL_EXTRA = ('runner_type', 'custom_imports', 'tta_model', 'tta_pipeline', 'default_scope', 'compile',
                   'activation_checkpointing', 'efficient_conv_bn_eval', 'find_unused_parameters',
                   'model_wrapper_cfg', 'sync_bn')
SCHEMAS = {  # typeless dicts whose keys mmengine's Runner reads
    ('randomness',): ('seed', 'diff_rank_seed', 'deterministic'),
    ('env_cfg',): ('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit'),
}
DEFAULT_LOOPS = {'train_cfg': None, 'val_cfg': 'ValLoop', 'test_cfg': 'TestLoop'}  # None: by_epoch
POPPED = {  # keys mmengine takes out before calling the constructor
    'default_hooks': ('priority',), 'custom_hooks': ('priority',),
    'optim_wrapper': ('constructor', 'paramwise_cfg'),
    'param_scheduler': ('convert_to_iter_based',),
}
REGISTRY_NAMES = ('MODELS', 'TASK_UTILS', 'LOOPS', 'HOOKS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS',
                  'OPTIM_WRAPPERS', 'OPTIMIZERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS',
                  'METRICS', 'EVALUATOR', 'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS', 'RUNNERS',
                  'FUNCTIONS', 'STRATEGIES', 'MODEL_WRAPPERS')


# ----------------------------------------------------------------------------- loading
def read_config(path):
    """``Config.fromfile(path)``; a config that cannot be loaded raises ``UserError`` naming the
    file and line (``config_error_message``)."""
    from mmengine.config import Config
    try:
        return Config.fromfile(path)
    except Exception as err:
        message = config_error_message(path, err)
        if message is None:
            raise
        raise UserError(message) from err


def _traceback_frames(err):
    tb = err.__traceback__
    while tb is not None:
        yield tb
        tb = tb.tb_next


def config_error_message(path, err):
    """One line for an error raised while mmengine loads the config ``path``, or None when the
    error is not the config's (an import inside a package that ``custom_imports`` names)."""
    if isinstance(err, ImportError) and 'Failed to import custom modules' in str(err):
        # mmengine: ImportError('Failed to import custom modules ...') from ImportError('Failed to
        # import NAME') raised while handling the import's own error (ModuleNotFoundError)
        chain, e = [], err
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__
        listed = next((str(e)[len('Failed to import '):] for e in chain[1:]
                       if str(e).startswith('Failed to import ') and 'custom modules' not in str(e)), None)
        inner = next((e for e in chain if isinstance(e, ImportError) and getattr(e, 'name', None)), None)
        missing = getattr(inner, 'name', None)
        if not listed or not missing or not (listed == missing or listed.startswith(missing + '.')):
            return None  # a module the listed package imports is missing: its problem, traceback
        return (f'config {path}: custom_imports names {listed!r}, which cannot be imported '
                f'({type(inner).__name__}: {inner}); fix: correct the name, or make the module '
                f'importable (PYTHONPATH=FOLDER, or install its package)')
    frames = list(_traceback_frames(err))
    # the configs being read: one _file2dict call per file (bases are read recursively)
    files, line = [], None
    for i, tb in enumerate(frames):
        if tb.tb_frame.f_code.co_name == '_file2dict':
            files.append(tb.tb_frame.f_locals.get('filename'))
            line = None
        elif tb.tb_frame.f_code.co_name == '<module>' and files:
            line = tb.tb_lineno  # the config's own code, run by mmengine from a temporary copy
    files = [osp.normpath(f) for f in files if f] or [path]
    culprit = files[-1]
    text = None
    fix = 'correct that line of the file'
    if isinstance(err, SyntaxError):
        line, text = err.lineno, (err.text or '').strip()
        detail = f'{type(err).__name__}: {err.msg}'
    elif isinstance(err, FileNotFoundError) and getattr(err, 'filename', None):
        missing = osp.normpath(str(err.filename))
        if missing == culprit and len(files) > 1:
            culprit = files[-2]  # a _base_ that does not exist: the includer is at fault
        detail = f'its _base_ {missing} does not exist' if missing != culprit else f'{missing} not found'
        fix = "correct the _base_ path (relative to the file, or 'mmseg::'/'mmdet::' for theirs)"
    else:
        detail = f'{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ""}'
    where = f'{culprit}, line {line}' if line else str(culprit)
    base = '' if osp.abspath(culprit) == osp.abspath(path) else f' (a base of {path})'
    shown = f': {text}' if text else ''
    return f'cannot load config {where}{base}: {detail}{shown}; fix: {fix}'


def missing_config_message(path):
    """'config file not found' with the nearest config names of the folder."""
    folder = osp.dirname(path) or '.'
    near = []
    if osp.isdir(folder):
        names = [n for n in sorted(os.listdir(folder)) if n.endswith('.py')]
        near = [osp.join(osp.dirname(path), n) for n in
                difflib.get_close_matches(osp.basename(path), names, n=3, cutoff=0.6)]
    hint = f'; nearest: {", ".join(near)}' if near else ''
    return f'config file not found: {path}{hint}'


def _typed_nodes(root):
    """(dotted path, dict) of the config's typed dicts that mmengine builds from a registry:
    the model and its direct parts, datasets, samplers, pipeline steps, hooks, loops, the
    optimizer (wrapper), schedulers, evaluators and the visualizer. Deeper dicts (a head's
    loss, an RoI head's parts, mmcv ops such as nms) are left to the build."""
    def typed(path, node):
        return [(path, node)] if isinstance(node, dict) and isinstance(node.get('type'), str) else []

    def each(path, node):
        items = enumerate(node) if isinstance(node, (list, tuple)) else [(None, node)]
        return [(f'{path}.{i}' if i is not None else path, n) for i, n in items]

    out = []
    model = root.get('model')
    out += typed('model', model)
    if isinstance(model, dict):
        for key, part in model.items():
            out += typed(f'model.{key}', part)
    for split in ('train', 'val', 'test'):
        loader = root.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        out += typed(f'{split}_dataloader.sampler', loader.get('sampler'))
        dataset = loader.get('dataset')
        out += typed(f'{split}_dataloader.dataset', dataset)
        if isinstance(dataset, dict):
            for path, step in each(f'{split}_dataloader.dataset.pipeline', dataset.get('pipeline') or []):
                out += typed(path, step)
        out += typed(f'{split}_cfg', root.get(f'{split}_cfg'))
    for key, hook in (root.get('default_hooks') or {}).items():
        out += typed(f'default_hooks.{key}', hook)
    for path, hook in each('custom_hooks', root.get('custom_hooks') or []):
        out += typed(path, hook)
    wrapper = root.get('optim_wrapper')
    out += typed('optim_wrapper', wrapper)
    if isinstance(wrapper, dict):
        out += typed('optim_wrapper.optimizer', wrapper.get('optimizer'))
    for name in ('param_scheduler', 'val_evaluator', 'test_evaluator'):
        for path, node in each(name, root.get(name) or []):
            out += typed(path, node)
    out += typed('visualizer', root.get('visualizer'))
    return out


def check_config_types(cfg, scope, path):
    """Raise ``UserError`` for a ``type`` of ``_typed_nodes`` that no registry of ``scope`` knows
    (a misspelt name, or a module that registers it and is not in ``custom_imports``)."""
    checker = _OptionChecker(cfg, {}, scope)
    for key, node in _typed_nodes(checker.root):
        name = node['type']
        if checker.resolve(name, key.split('.'))[1] is not None:
            continue
        preferred = checker.preferred(key.split('.')) or ['MODELS']
        names = []
        for reg_name in preferred:
            reg = checker.registries()[reg_name]
            names += list(reg.module_dict) + list(getattr(reg.parent, 'module_dict', {}) or {})
        raise UserError(f'config {path}: {key}.type={name!r} is not registered ({scope} '
                        f'{"/".join(preferred)}; {_nearest(name, names, [])}); fix: correct the name, or '
                        "list the module that registers it in custom_imports (e.g. imports=['mmpatch', "
                        "'my_module'])")


# ----------------------------------------------------------------------------- --cfg-options
def check_cfg_options(cfg, options, scope, type_overrides=None):
    """Raise ``UserError`` listing the options whose key is unknown or whose value has the wrong
    type (see the module docstring); ``options``: ``{dotted key: value}`` as DictAction parses.
    ``type_overrides``: ``{dotted path: type}`` the CLI sets after merging (``--amp``)."""
    checker = _OptionChecker(cfg, options, scope, type_overrides)
    found = dict(unknown=[], bad=[], idle=[])
    for key, value in options.items():
        problem = checker.check(key, value)
        if problem:
            found[problem[0]].append(problem[1])
    unknown, bad, idle = found['unknown'], found['bad'], found['idle']
    parts = []
    if unknown:
        parts.append(f'unknown key{"s" if len(unknown) > 1 else ""} in --cfg-options: '
                     + '; '.join(unknown) + '; fix: use a valid key (nearest listed), or, for a key '
                     'only your own code reads, define it in the config first')
    if bad:
        parts.append(f'bad value{"s" if len(bad) > 1 else ""} in --cfg-options: ' + '; '.join(bad)
                     + '; fix: give a value of the expected type (a registered name for a type)')
    if idle:
        parts.append(f'option{"s" if len(idle) > 1 else ""} without effect in --cfg-options: '
                     + '; '.join(idle) + '; fix: set the keys that use the variable instead')
    if parts:
        raise UserError(' | '.join(parts))


def _nearest(name, candidates, prefix):
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if close:
        return 'nearest: ' + ', '.join(_join(prefix, c) for c in close)
    shown = sorted(set(candidates))
    more = f', ... ({len(shown)} in all)' if len(shown) > 15 else ''
    return 'valid: ' + ', '.join(shown[:15]) + more if shown else 'it takes none'


def _join(prefix, key):
    return '.'.join([*map(str, prefix), str(key)])


def _dotted(path):
    return '.'.join(map(str, path))


def _leaves(node, prefix=''):
    """(dotted key, value) of every value below ``node``, dicts and lists included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        key = f'{prefix}{k}'
        yield key, v
        if isinstance(v, (dict, list, tuple)):
            yield from _leaves(v, key + '.')


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool) or a is None:
        return False
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return False


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _OptionChecker:
    def __init__(self, cfg, options, scope, type_overrides=None):
        self.root = cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg
        self.options = options
        self.scope = scope
        self.type_overrides = dict(type_overrides or {})
        self._registries = None

    def type_of(self, node, path):
        """The type a dict will have: set by an option, by the CLI, else the config's."""
        dotted = _dotted(path)
        if isinstance(self.options.get(f'{dotted}.type'), str):
            return self.options[f'{dotted}.type']
        return self.type_overrides.get(dotted, node.get('type'))

    def runner_reads(self):
        _, params = self.owner(self.root, [])
        return set(params)

    # registries --------------------------------------------------------------
    def registries(self):
        if self._registries is None:
            import mmengine.registry as root
            try:
                module = importlib.import_module(f'{self.scope}.registry')
            except ImportError:
                module = root
            self._registries = {}  # (a Registry's truth is its length: compare with None)
            for name in REGISTRY_NAMES:
                registry = getattr(module, name, None)
                registry = registry if registry is not None else getattr(root, name, None)
                if registry is not None:
                    self._registries[name] = registry
        return self._registries

    def preferred(self, path):
        top = str(path[0])
        last = next((str(p) for p in reversed(path) if isinstance(p, str)), top)
        if top in ('model', 'tta_model'):
            return ['MODELS', 'TASK_UTILS']
        if top in DEFAULT_LOOPS:
            return ['LOOPS']
        if top in POPPED and top.endswith('hooks'):
            return ['HOOKS']
        if top.endswith('_dataloader') or top.endswith('_pipeline'):
            return {'sampler': ['DATA_SAMPLERS'], 'batch_sampler': ['DATA_SAMPLERS'],
                    'collate_fn': ['FUNCTIONS'], 'dataset': ['DATASETS'],
                    'datasets': ['DATASETS']}.get(last, ['TRANSFORMS'])
        if top == 'optim_wrapper':
            return ['OPTIMIZERS'] if last == 'optimizer' else ['OPTIM_WRAPPERS']
        if top == 'param_scheduler':
            return ['PARAM_SCHEDULERS']
        if top.endswith('_evaluator'):
            return ['METRICS', 'EVALUATOR']
        if top == 'visualizer':
            return ['VISBACKENDS'] if last == 'vis_backends' else ['VISUALIZERS']
        return {'log_processor': ['LOG_PROCESSORS'], 'strategy': ['STRATEGIES']}.get(top, [])

    def resolve(self, type_name, path):
        """(registry name, class or function) of ``type_name`` at ``path``, or (None, None)."""
        if callable(type_name):
            return None, type_name
        if not isinstance(type_name, str):
            return None, None
        regs = self.registries()
        order = self.preferred(path)
        order += [n for n in regs if n not in order]
        for name in order:
            try:
                obj = regs[name].get(type_name)
            except Exception:  # a registry that cannot import its locations: cannot tell
                obj = None
            if obj is not None:
                return name, obj
        return None, None

    # signatures ---------------------------------------------------------------
    @staticmethod
    def parameters(obj):
        """``{name: inspect.Parameter}`` that ``obj(**kwargs)`` takes, or None for any key."""
        if inspect.isclass(obj):
            params, open_kwargs = {}, True
            for cls in obj.__mro__:
                init = cls.__dict__.get('__init__')
                if init is None:
                    continue
                if cls is object:
                    return None  # **kwargs that reach no named parameters: any key
                try:
                    sig = inspect.signature(init)
                except (TypeError, ValueError):
                    return None
                for name, p in list(sig.parameters.items())[1:]:
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                        params.setdefault(name, p)
                open_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
                if not open_kwargs:
                    return params
            return None
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            return None
        if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            return None
        return {n: p for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def owner(self, node, path):
        """(description, {param: Parameter} or None for any key) of the dict ``node`` at ``path``."""
        if not path:
            from mmengine.runner import FlexibleRunner, Runner
            params = {}
            for cls in (Runner, FlexibleRunner):
                params.update(self.parameters(cls) or {})
            params.pop('cfg', None)
            return "the Runner has no argument {name!r} (nor the config such a key)", dict(
                params, **{k: None for k in TOP_LEVEL_EXTRA})
        type_name = self.type_of(node, path)
        top = str(path[0])
        if type_name is None and len(path) == 1 and top in DEFAULT_LOOPS:
            type_name = DEFAULT_LOOPS[top] or ('EpochBasedTrainLoop' if node.get('by_epoch', True)
                                                else 'IterBasedTrainLoop')
            extra = ('by_epoch',) if top == 'train_cfg' else ()
        else:
            extra = ()
        if type_name is None:
            if tuple(path) in SCHEMAS:
                return f'the Runner reads no {{name!r}} from {top}', {k: None for k in SCHEMAS[tuple(path)]}
            if len(path) == 1 and top.endswith('_dataloader'):
                import torch.utils.data
                return (f'{top} is a torch DataLoader, which has no argument {{name!r}}',
                        self.parameters(torch.utils.data.DataLoader))
            return None, None
        _, obj = self.resolve(type_name, path)
        if obj is None:
            return None, None
        params = self.parameters(obj)
        if params is None:
            return None, None
        params = dict(params)
        for key in (*extra, *POPPED.get(top, ()), 'type'):
            params.setdefault(key, None)
        name = getattr(obj, '__name__', str(type_name))
        article = 'an' if name[:1].lower() in 'aeiou' else 'a'
        return f'{_dotted(path)} is {article} {name}, which has no argument {{name!r}}', params

    # the walk -----------------------------------------------------------------
    def check(self, key, value):
        parts = key.split('.')
        node, path = self.root, []
        for i, part in enumerate(parts):
            if isinstance(node, (list, tuple)):
                if not part.isdigit():
                    return 'unknown', (f'{key} ({_dotted(path)} is a list: index it by '
                                       f'number, 0..{len(node) - 1})')
                if int(part) >= len(node):
                    return 'unknown', (f'{key} ({_dotted(path)} has {len(node)} '
                                       f'entries, 0..{len(node) - 1})')
                node, path = node[int(part)], path + [int(part)]
                continue
            if not isinstance(node, dict):
                return None  # the option replaces a value by a dict: cannot judge
            if part in node:
                if not path and part not in self.runner_reads():
                    return self.variable_problem(key, part, node[part])
                parent, node, path = node, node[part], path + [part]
                continue
            if part.startswith('_'):
                return None  # _delete_, _scope_: mmengine's own
            return self.new_key(node, path, part, parts[i + 1:], key, value)
        return self.value_problem(key, parent, path, node, value)

    def new_key(self, node, path, name, rest, key, value):
        what, params = self.owner(node, path)
        if params is None:
            return self.typed_siblings(node, path, name, rest, key)
        if name in params:
            param = params[name]
            if not rest and param is not None and param.default is not param.empty:
                return self.type_problem(key, param.default, value, param, 'default')
            return None
        return 'unknown', f'{key} ({what.format(name=name)}; {_nearest(name, [*params, *node], path)})'

    def typed_siblings(self, node, path, name, rest, key):
        """A new dict among dicts that all have a ``type`` needs a ``type`` too."""
        siblings = [k for k, v in node.items() if isinstance(v, dict)]
        if not rest or not siblings or not all('type' in node[k] for k in siblings):
            return None
        if _join(path, name) + '.type' in self.options:
            return None
        return 'unknown', (f'{key} (no {name!r} in {_dotted(path)}, and a new entry needs '
                           f"a type; {_nearest(name, list(node), path)})")

    def variable_problem(self, key, name, value):
        """An option on a top-level variable of the config file that nothing reads after loading."""
        reads = self.runner_reads()
        users = [k for k, v in _leaves(self.root) if k.split('.')[0] in reads and (
            _same(v, value) if isinstance(value, (tuple, list, dict)) else k.split('.')[-1] == name)][:6]
        where = f'; keys that hold it: {", ".join(users)}' if users else ''
        return 'idle', (f'{key}={self.options[key]} ({name} is a variable of the config file: substituted '
                        f'where the file uses it when the config was loaded, read by nothing since{where})')

    def value_problem(self, key, parent, path, old, value):
        if path and path[-1] == 'type' and isinstance(old, str) and isinstance(value, str) and old != value:
            registry, obj = self.resolve(old, path[:-1])
            if registry is not None and self.resolve_in(registry, value) is None:
                reg = self.registries()[registry]
                names = list(reg.module_dict)
                parent_reg = getattr(reg, 'parent', None)
                if parent_reg is not None:
                    names += list(parent_reg.module_dict)
                return 'bad', (f'{key}={value} (not a name in the {self.scope} {registry} registry; '
                               f'{_nearest(value, names, [])})')
            return None
        param = None
        if isinstance(parent, dict) and isinstance(path[-1], str):
            _, params = self.owner(parent, path[:-1])
            param = (params or {}).get(path[-1])
        return self.type_problem(key, old, value, param, 'config')

    def resolve_in(self, registry, name):
        try:
            return self.registries()[registry].get(name)
        except Exception:
            return None

    @staticmethod
    def type_problem(key, old, value, param, source):
        """A number (not a flag) replaced by text, a list or a dict, unless the constructor
        declares or defaults to a string for it."""
        if not _is_number(old) or value is None or _is_number(value):
            return None
        if param is not None:
            if isinstance(param.default, str) or 'str' in str(param.annotation):
                return None
        expected = 'an integer' if isinstance(old, int) else 'a number'
        has = 'the config has' if source == 'config' else 'its default is'
        got = f'the text {value!r}' if isinstance(value, str) else f'{type(value).__name__} {value!r}'
        return 'bad', f'{key}={value} (expected {expected}: {has} {old!r}; got {got})'
