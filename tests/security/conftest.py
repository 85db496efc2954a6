"""One DAG run under Airflow on a small sample whose names and e-mails carry a canary, shared by
the personal-data scan and the file-mode audit (both look at everything that run wrote).

Under pytest-xdist the run is made once for all workers of the session (the first to take the
lock makes it, the others read it), since `--dist loadfile` puts these files on different
workers and each made its own 80-second run."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from orchestration_support import (
    DAG_TEST_SCRIPT,
    EXPORT_DATE,
    end_to_end_skip_reason,
    generate_sample,
    land,
    migrated_airflow_env,
)
from security_support import plant_canaries

from pipelines.orchestration.airflow_local import DAGS_FOLDER
from pipelines.settings import RunPaths


@dataclass(frozen=True)
class CanaryRun:
    home: Path          # UCV_HOME of the run
    airflow_home: Path  # its AIRFLOW_HOME (logs, SQLite metadata DB with XComs)
    run: RunPaths
    planted_cells: int
    control_cells: int  # names with a tab, CR LF or ESC inside
    result: dict


@pytest.fixture(scope="session")
def canary_run(tmp_path_factory, worker_id) -> CanaryRun:
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    if worker_id == "master":  # not under xdist
        return _make_canary_run(tmp_path_factory.mktemp("canary"))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
    with open(shared / "canary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = shared / "canary" / "made.json"
        if not made.is_file():
            run = _make_canary_run(shared / "canary")
            made.write_text(json.dumps({"planted": run.planted_cells,
                                        "control": run.control_cells, "result": run.result}))
        facts = json.loads(made.read_text())
    base = shared / "canary"
    return CanaryRun(base / "ucv", base / "airflow",
                     RunPaths.for_run(EXPORT_DATE.isoformat(), base=base / "ucv" / "runs"),
                     facts["planted"], facts["control"], facts["result"])


def _make_canary_run(base: Path) -> CanaryRun:
    base.mkdir(parents=True, exist_ok=True)
    home, airflow_home = base / "ucv", base / "airflow"
    landing = land(home, generate_sample(base / "generated"))
    planted, control = plant_canaries(landing)
    env = migrated_airflow_env(airflow_home, home)
    result = _dag_test_logged(env, "2026-11-23T00:00:00+00:00", airflow_home / "logs")
    return CanaryRun(home, airflow_home,
                     RunPaths.for_run(EXPORT_DATE.isoformat(), base=home / "runs"), planted, control,
                     result)


def _dag_test_logged(env: dict[str, str], logical_date: str, log_dir: Path) -> dict:
    """One `dag.test()` run (processes the day before `logical_date`), its whole output kept
    in `log_dir` (task logs go to the console under dag.test) so the scan reads it too."""
    result = subprocess.run([sys.executable, "-c", DAG_TEST_SCRIPT, str(DAGS_FOLDER),
                             logical_date, "unified_customer_view"], env=env, capture_output=True, text=True, timeout=900)
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "dag_test.stdout.log").write_text(result.stdout)
    (log_dir / "dag_test.stderr.log").write_text(result.stderr)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")), None)
    assert line is not None, f"dag.test() did not finish:\n{result.stderr[-4000:]}"
    return json.loads(line[len("RESULT"):])
