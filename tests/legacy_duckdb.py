"""An older duckdb package from PyPI, installed once into a cache folder, run in a subprocess.

The warehouse must open in the DuckDB 1.x that analysts' CLIs, drivers and BI tools ship; this
installs that version beside (not into) the project's environment and runs a script with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".tools" / "test-cache"


def legacy_duckdb(version: str) -> Path:
    """Folder holding `duckdb==version` (installed with uv, or pip, on first use)."""
    target = CACHE / f"duckdb-{version}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    uv = PROJECT_ROOT / ".tools" / "bin" / "uv"
    spec = f"duckdb=={version}"
    if uv.exists():
        argv = [str(uv), "pip", "install", "--quiet", "--python", sys.executable,
                "--target", str(target), spec]
    else:
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), spec]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"could not install {spec} from PyPI: {done.stderr.strip()[-500:]}")
    (target / ".complete").touch()
    return target


def run_with_duckdb(version: str, script: str, *args: str) -> dict:
    """Run `script` (Python, prints one JSON value) with duckdb==version first on the path."""
    env = {**os.environ, "PYTHONPATH": str(legacy_duckdb(version))}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, timeout=300)
    if done.returncode:
        raise AssertionError(f"duckdb {version} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)
