"""tools/misc/config_writer.py, the command line of every config generator: it writes only the
files that differ, creates folders, leaves equal files untouched, and ``--check`` writes nothing
and exits with the command that regenerates."""
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
write_configs = runpy.run_path(str(REPO / 'tools' / 'misc' / 'config_writer.py'))['main']


def test_writes_what_differs_and_checks(tmp_path, capsys):
    (tmp_path / 'same.py').write_text('a = 1\n')
    (tmp_path / 'old.py').write_text('b = 1\n')
    configs = {'same.py': 'a = 1\n', 'old.py': 'b = 2\n', 'new/leaf.py': 'c = 3\n'}

    with pytest.raises(SystemExit) as exc:
        write_configs(configs, str(tmp_path), 'tools/misc/make_x_configs.py', 'doc', ['--check'])
    assert exc.value.code == 'run: python tools/misc/make_x_configs.py'
    assert '2 of 3 configs differ from the generator: old.py, new/leaf.py' in capsys.readouterr().out
    assert (tmp_path / 'old.py').read_text() == 'b = 1\n' and not (tmp_path / 'new').exists()

    same_mtime = (tmp_path / 'same.py').stat().st_mtime_ns
    write_configs(configs, str(tmp_path), 'tools/misc/make_x_configs.py', 'doc', [])
    assert '2 of 3 configs written: old.py, new/leaf.py' in capsys.readouterr().out
    assert {p: (tmp_path / p).read_text() for p in configs} == configs
    assert (tmp_path / 'same.py').stat().st_mtime_ns == same_mtime

    write_configs(configs, str(tmp_path), 'tools/misc/make_x_configs.py', 'doc', ['--check'])
    assert '0 of 3 configs differ from the generator' in capsys.readouterr().out
