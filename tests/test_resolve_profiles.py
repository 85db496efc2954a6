"""Each generator profile trained from scratch with `ucv train` and resolved with `ucv link`, no
code change: the configuration folder gets only the `models:` lines that `ucv train` prints.

Floors: measured on these small seeded sets (CUSTOMERS, SEED) when the test was written, minus a
margin; the 100k figures are in the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from pipelines.settings import PROJECT_ROOT

CUSTOMERS = 1500
SEED = 5
FLOORS = {  # pairwise precision, recall
    "no_national_id": (0.99, 0.97),
    "us": (0.99, 0.97),
    "leads_light": (0.99, 0.96),
}


def _ucv(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env,
                          capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(FLOORS))
def test_a_profile_trains_from_scratch_and_resolves(profile, tmp_path):
    source = PROJECT_ROOT / "schemas" / "profiles" / profile
    if not source.is_dir():
        pytest.skip(f"no generator profile {profile}")
    config = tmp_path / "config"
    shutil.copytree(source, config, ignore=shutil.ignore_patterns("models", "resolution.yaml"))
    env = {**os.environ, "UCV_CONFIG_DIR": str(config), "UCV_HOME": str(tmp_path / "home")}
    gen = tmp_path / "gen"
    steps = [
        ("generate", "--profile", profile, "--customers", str(CUSTOMERS), "--seed", str(SEED),
         "--out", str(gen)),
        ("ingest", "--landing", str(gen / "landing"), "--run-id", "2026-11-22"),
    ]
    for step in steps:
        done = _ucv(*step, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    records = tmp_path / "home" / "runs" / "2026-11-22" / "staged" / "source_records.parquet"
    trained = _ucv("train", "--records", str(records), env=env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "Traceback" not in trained.stdout + trained.stderr
    lines = trained.stdout[trained.stdout.index("models:"):]
    (config / "resolution.yaml").write_text(lines, encoding="utf-8")
    assert (config / "models" / "person-v1.profile.json").is_file()
    linked = _ucv("link", "--run-id", "2026-11-22", "--no-charts", env=env)
    assert linked.returncode == 0, linked.stdout + linked.stderr
    evaluated = _ucv("evaluate", "--run-id", "2026-11-22", "--truth", str(gen / "truth"),
                     "--json", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    overall = json.loads(evaluated.stdout)["overall"]
    precision, recall = FLOORS[profile]
    assert overall["pairwise_precision"] >= precision, overall
    assert overall["pairwise_recall"] >= recall, overall
