"""Files holding personal data are owner/group-only (issue 15, finding 2): 0640 files and 0750
folders by default, configurable with UCV_FILE_MODE / UCV_DIR_MODE."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from pipelines import fileio


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.slow
def test_a_whole_run_leaves_no_world_accessible_file_or_folder(canary_run):
    home = canary_run.home
    entries = [p for p in home.rglob("*") if not p.is_symlink()]
    assert len(entries) > 60
    open_to_all = [f"{_mode(p):04o} {p.relative_to(home)}" for p in entries if _mode(p) & 0o007]
    assert open_to_all == []
    # the examples: warehouse file, Parquet mirror, exports, run data, charts
    for pattern in ("warehouse/ucv.duckdb", "warehouse/parquet/*/customers.parquet",
                    "export/*/marketing_customers_*.csv", "runs/*/raw/*.parquet",
                    "runs/*/golden/customers.parquet", "runs/*/report/charts/*.html"):
        found = list(home.glob(pattern))
        assert found and all(_mode(p) & 0o077 in (0o040, 0o000) for p in found), pattern
    assert _mode(canary_run.run.root) & 0o007 == 0


def _created_modes(env_extra: dict[str, str], tmp_path) -> tuple[int, int, str]:
    """Modes of a file and a folder created by a fresh process that imported `pipelines`."""
    script = ("import pipelines, duckdb, pathlib, sys; d = pathlib.Path(sys.argv[1]); "
              "(d / 'folder').mkdir(); "
              "duckdb.connect(str(d / 'x.duckdb')).execute('CREATE TABLE t AS SELECT 1 AS a')")
    env = {**os.environ, **env_extra}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return _mode(tmp_path / "x.duckdb"), _mode(tmp_path / "folder"), result.stderr


def test_any_process_importing_the_package_creates_private_files(tmp_path):
    file_mode, folder_mode, _ = _created_modes({}, tmp_path)
    assert (file_mode, folder_mode) == (0o640, 0o750)


def test_modes_are_configurable_and_a_bad_setting_stays_private(tmp_path):
    (tmp_path / "a").mkdir()
    assert _created_modes({"UCV_FILE_MODE": "0600", "UCV_DIR_MODE": "0700"},
                          tmp_path / "a")[:2] == (0o600, 0o700)
    (tmp_path / "b").mkdir()
    file_mode, folder_mode, stderr = _created_modes({"UCV_FILE_MODE": "rw-r--r--"},
                                                    tmp_path / "b")
    assert (file_mode, folder_mode) == (0o640, 0o750)
    assert "ignoring UCV_FILE_MODE='rw-r--r--'" in stderr


def test_replace_sets_the_mode_even_over_an_old_world_readable_file(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    target.chmod(0o644)
    fileio.write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == fileio.file_mode()
    folder = tmp_path / "old_folder"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    assert _mode(fileio.private_dir(folder)) == fileio.dir_mode()
