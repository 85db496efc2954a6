"""Test support for end-to-end runs: a small generated sample, landing it, fingerprinting a run."""

from __future__ import annotations

import io
import shutil
from csv import reader, writer
from datetime import date
from pathlib import Path

from pipelines import settings
from pipelines.orchestration import stages
from pipelines.orchestration.fingerprint import output_fingerprints

EXPORT_DATE = date(2026, 11, 22)
# A few hundred customers: about a thousand source records over the four sources.
SAMPLE_CUSTOMERS = 400
SAMPLE_SEED = 7


def end_to_end_skip_reason() -> str | None:
    """Why an end-to-end run cannot happen in this checkout yet (None when it can)."""
    missing = stages.missing_prerequisites(
        {**stages.STAGE_FUNCTIONS, "pipelines.generate": ["generate_exports"]})
    return "not available yet: " + ", ".join(missing) if missing else None


def generate_sample(out_dir: Path, customers: int = SAMPLE_CUSTOMERS,
                    seed: int = SAMPLE_SEED) -> Path:
    """Generate sample exports into out_dir; returns their landing folder."""
    from pipelines.generate import generate_exports

    generate_exports(out_dir, customers=customers, seed=seed, export_date=EXPORT_DATE)
    return out_dir / "landing"


def land(home: Path, landing: Path, export_date: date = EXPORT_DATE) -> Path:
    """Copy landing files into <home>/landing/<export date>/."""
    target = home / "landing" / export_date.isoformat()
    shutil.copytree(landing, target)
    return target


def fingerprints(export_date: date = EXPORT_DATE) -> dict[str, str]:
    """Fingerprints of the run's outputs, the published warehouse and the exports (UCV_HOME)."""
    return output_fingerprints(stages.run_paths(export_date.isoformat()),
                               settings.warehouse_file(), settings.export_dir())


def drift_csv_header(landing: Path, prefix: str = "sales") -> Path:
    """Rename every header column of a source's CSV export (UTF-8): a schema drift."""
    csv = next(p for p in sorted(landing.iterdir()) if p.name.startswith(prefix)
               and p.suffix == ".csv")
    header, newline, rest = csv.read_text(encoding="utf-8").partition("\n")
    columns = next(reader([header]))
    out = io.StringIO()
    writer(out, lineterminator="").writerow([f"{c}_renamed" for c in columns])
    csv.write_text(out.getvalue() + newline + rest, encoding="utf-8")
    return csv


# One DAG run with dag.test() in a fresh interpreter; prints the run and task states as JSON.
# Retries are off (a test must not wait minutes for a retry), except where the DAG itself must
# prevent them: extract and validate fail at once on a rejected source.
DAG_TEST_SCRIPT = r"""
import json, sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag("unified_customer_view")
for t in dag.tasks:
    if t.task_id not in ("extract", "validate"):
        t.retries = 0
dr = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]))
tis = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state),
        "try_number": ti.try_number, "rendered_map_index": ti.rendered_map_index}
       for ti in dr.get_task_instances()]
print("RESULT" + json.dumps({"state": str(dr.state), "run_id": dr.run_id, "tis": tis}))
"""


def migrated_airflow_env(airflow_home: Path, ucv_home: Path) -> dict[str, str]:
    """Environment for a test's Airflow: its own home and SQLite DB (migrated), its own data."""
    from pipelines.orchestration.airflow_local import airflow_env, migrate_db

    env = airflow_env(airflow_home)
    env["UCV_HOME"] = str(ucv_home)
    migrate_db(env, airflow_home / "migrate.log")
    return env


def run_dag_test(env: dict[str, str], logical_date: str) -> dict:
    """Run the DAG once for a logical date with dag.test(); returns run state and task states."""
    import json
    import subprocess
    import sys

    from pipelines.orchestration.airflow_local import DAGS_FOLDER

    result = subprocess.run([sys.executable, "-c", DAG_TEST_SCRIPT, str(DAGS_FOLDER),
                             logical_date], env=env, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"dag.test() did not finish:\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-4000:]}")
    return json.loads(line[len("RESULT"):])
