"""The nightly DAG in three layers: it imports cleanly and fast, its policy, its documented graph.

Airflow reads its configuration when first imported, so the DAG is loaded once in a fresh
interpreter with a temporary AIRFLOW_HOME; that process reports what the tests check as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from pipelines.orchestration.graph import documented_edges
from pipelines.settings import PROJECT_ROOT

DAG_ID = "unified_customer_view"
DOWNSTREAM_DAG_ID = "ucv_marketing_handoff"
HEAVY_MODULES = ["pandas", "duckdb", "splink", "great_expectations", "pyarrow", "numpy",
                 "pipelines.ingest", "pipelines.resolve", "pipelines.identify", "pipelines.golden"]

INSPECT_DAG = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
as_seconds = lambda v: v.total_seconds() if hasattr(v, "total_seconds") else v
before = set(sys.modules)
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
dag = bag.dags.get(sys.argv[2])
heavy = sorted(m for m in set(sys.modules) - before
               if any(m == h or m.startswith(h + ".") for h in json.loads(sys.argv[3])))
facts = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
         "dag_ids": sorted(bag.dags), "parse_seconds": seconds, "heavy_modules": heavy}
if dag is not None:
    tt = dag.timetable
    facts.update(
        schedule=getattr(tt, "expression", None), timezone=str(getattr(tt, "timezone", None)),
        timetable=type(tt).__name__, catchup=dag.catchup, max_active_runs=dag.max_active_runs,
        dagrun_timeout=dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        tags=sorted(dag.tags), doc_md=dag.doc_md, params=sorted(dag.params.keys()),
        description=dag.description,
        deadlines=[{"reference": type(d.reference).__name__,
                    "interval": d.interval.total_seconds(), "callback": str(d.callback.path)}
                   for d in (dag.deadline or [])],
        tasks={t.task_id: {"owner": t.owner, "retries": t.retries, "pool": t.pool,
                           "outlets": sorted(a.name for a in t.outlets),
                           "mode": getattr(t, "mode", None),
                           "poke_interval": as_seconds(getattr(t, "poke_interval", None)),
                           "sensor_timeout": as_seconds(getattr(t, "timeout", None)),
                           "retry_delay": t.retry_delay.total_seconds(),
                           "execution_timeout": t.execution_timeout.total_seconds()
                           if t.execution_timeout else None,
                           "mapped": bool(getattr(t, "is_mapped", False)),
                           "downstream": sorted(t.downstream_task_ids),
                           "upstream": sorted(t.upstream_task_ids),
                           "doc": bool(t.doc_md or t.doc),
                           "on_failure": bool(t.on_failure_callback)}
               for t in dag.tasks},
    )
down = bag.dags.get(sys.argv[4])
if down is not None:
    condition = down.timetable.asset_condition
    facts["downstream"] = {"condition": type(condition).__name__,
                           "assets": sorted(a.name for a in condition.objects),
                           "tags": sorted(down.tags), "doc_md": bool(down.doc_md)}
print("FACTS" + json.dumps(facts, default=str))
"""


@pytest.fixture(scope="module")
def dag_facts(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags")}
    env.pop("UCV_TASK_RETRIES", None)  # the policy as deployed, not as `make run` tunes it
    result = subprocess.run(
        [sys.executable, "-c", INSPECT_DAG, str(PROJECT_ROOT / "dags"), DAG_ID,
         json.dumps(HEAVY_MODULES), DOWNSTREAM_DAG_ID], env=env, capture_output=True, text=True,
        timeout=600)  # a hang guard; parsing takes ~5 s, minutes on a saturated machine
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("FACTS")), None)
    assert line, f"DAG inspection failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(line[len("FACTS"):])


# --- layer 1: it imports, cleanly and fast ---------------------------------------------------

def test_dag_imports_without_errors(dag_facts):
    assert dag_facts["import_errors"] == {}
    assert dag_facts["dag_ids"] == sorted([DAG_ID, DOWNSTREAM_DAG_ID])


def test_parsing_the_dag_imports_no_heavy_library(dag_facts):
    assert dag_facts["heavy_modules"] == []
    # a sanity bound only: parsing a wiring-only file takes well under a second
    assert dag_facts["parse_seconds"] < 5


# --- layer 2: policy ----------------------------------------------------------------------------

def test_schedule_is_nightly_without_catchup_and_one_run_at_a_time(dag_facts):
    assert dag_facts["timetable"] == "CronTriggerTimetable"
    assert dag_facts["schedule"] == "0 2 * * *"
    assert dag_facts["timezone"] == "UTC"
    assert dag_facts["catchup"] is False
    assert dag_facts["max_active_runs"] == 1
    assert dag_facts["dagrun_timeout"] and dag_facts["dagrun_timeout"] <= 24 * 3600
    assert "export_date" in dag_facts["params"]


def test_every_task_retries_with_a_delay_and_has_an_owner_and_a_timeout(dag_facts):
    for task_id, task in dag_facts["tasks"].items():
        # a reschedule-mode sensor's waiting is its retry; it fails only at its deadline
        assert task["retries"] >= 1 or task["mode"] == "reschedule", task_id
        assert task["retry_delay"] >= timedelta(minutes=1).total_seconds(), task_id
        assert task["owner"] not in ("", "airflow"), task_id
        assert task["execution_timeout"], task_id
        assert task["on_failure"], f"{task_id} writes no failure report"
        # TaskFlow turns a task's docstring into its UI doc (mapped tasks keep it elsewhere)
        assert task["doc"] or task["mapped"], f"{task_id} has no docstring"


def test_tags_and_documentation(dag_facts):
    from markdown_it import MarkdownIt

    assert {"ucv", "nightly"} <= set(dag_facts["tags"])
    assert dag_facts["description"] and len(dag_facts["description"]) < 200
    # the UI renders doc_md as Markdown: placeholders in angle brackets must survive it
    html = MarkdownIt().render(dag_facts["doc_md"])
    assert "data/landing/&lt;D-1&gt;/" in html and "data/runs/&lt;D-1&gt;/" in html


def test_published_state_is_declared_as_assets_a_downstream_dag_waits_for(dag_facts):
    tasks = dag_facts["tasks"]
    assert tasks["publish"]["outlets"] == ["ucv_parquet_mirror", "ucv_warehouse"]
    assert tasks["export"]["outlets"] == ["ucv_marketing_export"]
    assert all(not t["outlets"] for name, t in tasks.items() if name not in ("publish", "export"))
    assert dag_facts["downstream"]["assets"] == ["ucv_marketing_export", "ucv_warehouse"]
    assert dag_facts["downstream"]["condition"] == "AssetAll"  # both, from the same night
    assert dag_facts["downstream"]["doc_md"]


def test_landed_exports_are_awaited_in_reschedule_mode_until_a_deadline(dag_facts):
    from pipelines.orchestration.operations import load_operations

    sensor, ops = dag_facts["tasks"]["wait_for_exports"], load_operations()
    assert sensor["mode"] == "reschedule"  # the worker slot is free between checks
    assert sensor["poke_interval"] == ops.landing_poke.total_seconds()
    # the sensor's own timeout is only a safety net behind the deadline it enforces itself
    assert sensor["sensor_timeout"] > ops.landing_wait.total_seconds()
    assert "wait_for_exports" in dag_facts["tasks"]["prepare"]["upstream"]


def test_a_late_run_raises_deadline_alerts_through_the_notifiers(dag_facts):
    from pipelines.orchestration.operations import load_operations

    run_deadline = load_operations().run_deadline.total_seconds()
    assert {d["reference"] for d in dag_facts["deadlines"]} == {"DagRunLogicalDateDeadline"}
    assert {d["interval"] for d in dag_facts["deadlines"]} == {run_deadline}
    assert sorted(d["callback"].rsplit(".", 1)[1] for d in dag_facts["deadlines"]) == [
        "EmailNotifier", "WebhookNotifier"]


def test_heavy_stages_share_a_pool(dag_facts):
    from pipelines.orchestration.operations import load_operations

    (pool,) = load_operations().pools
    for task_id, task in dag_facts["tasks"].items():
        assert (task["pool"] == pool.name) == (task_id in pool.tasks), task_id


# --- layer 3: structure --------------------------------------------------------------------------

def test_task_graph_equals_the_documented_graph(dag_facts):
    edges = {(task_id, down) for task_id, task in dag_facts["tasks"].items()
             for down in task["downstream"]}
    assert edges == documented_edges()
    documented_tasks = {t for edge in documented_edges() for t in edge}
    assert set(dag_facts["tasks"]) == documented_tasks


def test_extract_and_validate_are_mapped_per_source_and_nothing_else(dag_facts):
    mapped = {task_id for task_id, task in dag_facts["tasks"].items() if task["mapped"]}
    assert mapped == {"extract", "validate"}


def test_documented_edges_parser_reads_the_block(tmp_path):
    doc = tmp_path / "ops.md"
    doc.write_text("x\n<!-- dag-edges:start -->\n```text\na >> b\nb >> c\n```\n"
                   "<!-- dag-edges:end -->\nd >> e\n")
    assert documented_edges(doc) == {("a", "b"), ("b", "c")}
    doc.write_text("no block here\na >> b\n")
    with pytest.raises(ValueError, match="no <!-- dag-edges:start -->"):
        documented_edges(doc)
