"""No import cycle between the folders (and modules) of mmpatch.

Every ``import`` in the package, at module level or inside a function, is an edge between the
two siblings under the nearest package the importer and the imported module share: e.g.
``mmpatch.models.layers.ssd_scan`` importing ``mmpatch.models.losses.x`` is the edge
``layers -> losses`` under ``mmpatch.models``, and ``mmpatch.utils.flops`` importing
``mmpatch.models.layers.y`` is ``utils -> models`` under ``mmpatch``. Within each package the
edges must form no cycle, so each folder has a direction: it imports from some and is imported by
others, never both ways.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path, root):
    """``root/mmpatch/models/x.py`` -> 'mmpatch.models.x' (a package's ``__init__``: its name)."""
    parts = list(path.relative_to(root).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_names(tree, module, is_package):
    """Absolute names each import statement of ``tree`` may refer to (for ``from m import a``:
    ``m`` and ``m.a``, as ``a`` may be a submodule)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.') if is_package else module.split('.')[:-1]
                base = base[:len(base) - node.level + 1]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            yield prefix
            yield from (f'{prefix}.{alias.name}' for alias in node.names)


def sibling_edges(root, package='mmpatch'):
    """``{parent: {(child_a, child_b): [(importer, imported), ...]}}``: the imports inside
    ``package`` (under ``root``) between two different children of ``parent``."""
    edges = {}
    for path in sorted((root / package).rglob('*.py')):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in imported_names(tree, module, path.name == '__init__.py'):
            a, b = module.split('.'), name.split('.')
            if b[0] != package:
                continue
            shared = 0
            while shared < min(len(a), len(b)) and a[shared] == b[shared]:
                shared += 1
            if shared in (len(a), len(b)):  # a package and its own submodule
                continue
            pair = (a[shared], b[shared])
            edges.setdefault('.'.join(a[:shared]), {}).setdefault(pair, []).append((module, name))
    return edges


def find_cycle(pairs):
    """A cycle ``[n0, n1, ..., n0]`` in the directed graph of ``pairs``, or None."""
    graph = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
    state = {}  # node -> 'open' (on the current path) or 'done'

    def visit(node, path):
        state[node] = 'open'
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 'done'
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def import_cycles(root, package='mmpatch'):
    """One message per package whose children import each other in a cycle."""
    problems = []
    for parent, pairs in sorted(sibling_edges(root, package).items()):
        cycle = find_cycle(pairs)
        if cycle:
            steps = [f'  {a} -> {b}: {pairs[(a, b)][0][0]} imports {pairs[(a, b)][0][1]}'
                     for a, b in zip(cycle, cycle[1:])]
            problems.append(f'{parent}: ' + ' -> '.join(cycle) + '\n' + '\n'.join(steps))
    return problems


def test_no_import_cycle_between_folders():
    problems = import_cycles(REPO)
    assert not problems, 'import cycles:\n' + '\n'.join(problems)


def test_models_folders_import_in_one_direction():
    pairs = sibling_edges(REPO)['mmpatch.models']
    assert ('layers', 'losses') not in pairs and ('layers', 'weights') not in pairs
    assert ('backbones', 'weights') in pairs and ('heads', 'losses') in pairs
    assert not (REPO / 'mmpatch' / 'models' / 'utils').exists()


def test_find_cycle():
    assert find_cycle([('a', 'b'), ('b', 'c')]) is None
    assert find_cycle([('a', 'b'), ('b', 'c'), ('c', 'a')]) == ['a', 'b', 'c', 'a']
    assert find_cycle([('x', 'y'), ('y', 'x')]) == ['x', 'y', 'x']


def test_a_cycle_through_relative_and_lazy_imports_is_reported(tmp_path):
    files = {
        'mmpatch/__init__.py': '',
        'mmpatch/models/__init__.py': 'from . import layers, utils\n',
        'mmpatch/models/layers/__init__.py': '',
        'mmpatch/models/layers/scan.py': 'from ..utils.autocast import off\n',
        'mmpatch/models/utils/__init__.py': '',
        'mmpatch/models/utils/autocast.py': 'def off():\n    from ..layers import pos_embed\n',
        'mmpatch/utils/__init__.py': '',
        'mmpatch/utils/flops.py': 'import mmpatch.models.layers.scan\n',
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = import_cycles(tmp_path)
    assert len(problems) == 1 and problems[0].startswith('mmpatch.models: layers -> utils -> layers')
    assert 'mmpatch.models.layers.scan imports mmpatch.models.utils.autocast' in problems[0]
    (tmp_path / 'mmpatch/models/utils/errors.py').write_text('import mmpatch.utils.flops\n')
    problems = import_cycles(tmp_path)
    assert any(p.startswith('mmpatch: models -> utils -> models') for p in problems)
