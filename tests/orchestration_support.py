"""Test support for end-to-end runs: a small generated sample, landing it, fingerprinting a run,
and running the DAG under `dag.test()` in a fresh interpreter."""

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


# One DAG run with dag.test() in a fresh interpreter; prints the run and task states as JSON, the
# reschedules of sensors, the Asset events the run emitted and the DAGs the scheduler now owes a
# run (the scheduler's own query: an Asset-scheduled DAG appears once its Assets were updated).
# Retries are off (a test must not wait minutes for a retry), except where the DAG itself must
# prevent them: extract and validate fail at once on a rejected source.
DAG_TEST_SCRIPT = r"""
import json, sys
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.models.dag import DagModel
from airflow.models.taskreschedule import TaskReschedule
from airflow.utils.session import create_session
from sqlalchemy import select
dag = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[3] if len(sys.argv) > 3
                                             else "unified_customer_view")
for t in dag.tasks:
    if t.task_id not in ("extract", "validate"):
        t.retries = 0
dr = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]))
tis = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state),
        "try_number": ti.try_number, "rendered_map_index": ti.rendered_map_index}
       for ti in dr.get_task_instances()]
with create_session() as session:
    reschedules = {}
    for ti in dr.get_task_instances(session=session):
        n = len(session.scalars(select(TaskReschedule).where(TaskReschedule.ti_id == ti.id)).all())
        if n:
            reschedules[ti.task_id] = n
    events = [{"asset": e.asset.name, "extra": e.extra, "source_task_id": e.source_task_id}
              for e in session.scalars(select(AssetEvent)).all()]
    _, due = DagModel.dags_needing_dagruns(session)
print("RESULT" + json.dumps({"state": str(dr.state), "run_id": dr.run_id, "tis": tis,
                             "reschedules": reschedules, "asset_events": events,
                             "dags_due": sorted(due)}, default=str))
"""


def migrated_airflow_env(airflow_home: Path, ucv_home: Path) -> dict[str, str]:
    """Environment for a test's Airflow: its own home and SQLite DB (migrated), its own data."""
    from pipelines.orchestration.airflow_local import airflow_env, migrate_db

    env = airflow_env(airflow_home)
    env["UCV_HOME"] = str(ucv_home)
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
    env["UCV_DEADLINE_ALERTS"] = "0"  # as `make run` does: see the DAG file
    migrate_db(env, airflow_home / "migrate.log")
    return env


def serialize_dags(env: dict[str, str]) -> None:
    """Put every DAG of the folder in the test's metadata DB, as the dag-processor would, so
    Asset-scheduled DAGs are known to the scheduler's queries."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, check=True,
                   capture_output=True, timeout=1200)


def run_dag_test(env: dict[str, str], logical_date: str,
                 dag_id: str = "unified_customer_view") -> dict:
    """Run a DAG once for a logical date with dag.test(); returns run state and task states."""
    import json
    import subprocess
    import sys

    from pipelines.orchestration.airflow_local import DAGS_FOLDER

    result = subprocess.run([sys.executable, "-c", DAG_TEST_SCRIPT, str(DAGS_FOLDER),
                             logical_date, dag_id], env=env, capture_output=True, text=True,
                            timeout=1800)  # a hang guard: minutes normally, far more under load
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"dag.test() did not finish:\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-4000:]}")
    return json.loads(line[len("RESULT"):])
