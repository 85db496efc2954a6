"""One nightly run without a scheduler: the same stages, in the same order, as the Airflow DAG.

Which exports a run processes: the run with logical date D (Airflow's @daily run stamped at D's
own midnight) processes the exports landed for the day before, data/landing/<D-1>/, and its run id
is that export date. `ucv run --date E` processes data/landing/<E>/ directly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from pipelines.orchestration import stages
from pipelines.orchestration.isolation import run_in_child, use_stage_processes
from pipelines.settings import RunPaths


def export_date_for(logical_date: date | datetime) -> date:
    """The export date a run processes: the day before its logical date."""
    day = logical_date.date() if isinstance(logical_date, datetime) else logical_date
    return day - timedelta(days=1)


def logical_date_for(export_date: date) -> date:
    """The logical date of the scheduled run that processes `export_date` (inverse of above)."""
    return export_date + timedelta(days=1)


def export_date_for_context(*, logical_date: datetime | None, run_after: datetime,
                            requested: str | None = None) -> tuple[date, str | None]:
    """Export date and logical date (ISO) of an Airflow run; `requested` overrides the date.

    Airflow 3 leaves the logical date empty on some manual runs: then the run-after date counts.
    """
    if requested:
        export_date = date.fromisoformat(requested)
    else:
        export_date = export_date_for(logical_date or run_after)
    return export_date, (logical_date.isoformat() if logical_date else None)


def run_pipeline(export_date: date, *, landing_dir: Path | None = None,
                 logical_date: date | None = None, replace_live: bool = False,
                 on_stage: Callable[[str, int, int], None] | None = None,
                 incremental: bool | None = None, stage_processes: bool = False) -> RunPaths:
    """Run every stage for the exports landed on `export_date`; returns the run's folders.

    A stage that fails marks the run failed in run_state.json and raises; stages after it
    (publish included) do not run, so the previously published warehouse stays in place.
    A date older than the live warehouse's is rebuilt without replacing it, unless `replace_live`.
    `on_stage(name, done, total)` is told before each stage starts (progress display).
    `incremental`: True reuses the last successful night's unchanged records and pairs, False
    forces a full night, None follows operations.yaml (docs/operations.md#incremental-nights).
    `stage_processes`: each stage in a forked process of its own (`isolation.py`; `ucv run` and
    the bench ask for it). Off for other callers: forking a process whose other threads are inside
    DuckDB at that moment (a test process serving HTTP, say) can crash the child.
    UCV_STAGE_PROCESSES=0/1 overrides either way.
    """
    run_id = export_date.isoformat()
    logical = (logical_date or logical_date_for(export_date)).isoformat()
    try:
        _run_stages(export_date, run_id, logical, landing_dir, on_stage or (lambda *_: None),
                    replace_live, incremental, use_stage_processes(stage_processes))
    except BaseException:
        stages.report_failure(run_id)
        raise
    return stages.run_paths(run_id)


def _run_stages(export_date: date, run_id: str, logical: str, landing_dir: Path | None,
                on_stage: Callable[[str, int, int], None], replace_live: bool = False,
                incremental: bool | None = None, stage_processes: bool = False) -> None:
    on_stage("prepare", 0, 0)
    sources = stages.prepare(export_date, logical_date=logical, landing_dir=landing_dir,
                             orchestrator="ucv")
    switch = [] if incremental is None else [incremental]
    steps: list[tuple[str, Callable[[], object]]] = [
        *((f"extract.{s}", partial(stages.extract, run_id, s)) for s in sources),
        *((f"validate.{s}", partial(stages.validate, run_id, s)) for s in sources),
        # the switch only when given: otherwise each stage reads operations.yaml itself, as
        # under Airflow with mode=config
        ("standardize", partial(stages.standardize, run_id, sources, *switch)),
        ("resolve", partial(stages.resolve, run_id, *switch)),
        ("identify", partial(stages.identify, run_id)),
        ("golden", partial(stages.golden, run_id, *switch)),
        ("publish", partial(stages.publish, run_id, replace_live)),
        *((name, partial(getattr(stages, name), run_id)) for name in ("export", "report")),
    ]
    if stage_processes:
        _warm_up_for_stages()
    for done, (name, step) in enumerate(steps, start=1):
        on_stage(name, done, len(steps) + 1)
        if stage_processes:
            run_in_child(name, step)  # each stage's memory is freed when it ends (isolation.py)
        else:
            step()


def _warm_up_for_stages() -> None:
    """The modules every stage would import for itself, imported once before the stages fork:
    each stage's process inherits them (a first extract at 100k took 1.6 s instead of 0.2 s,
    importing the standardizers' dictionaries). Great Expectations is left to the stages that use
    it (importing it costs ~10 s here; the default suites' rules run as SQL without it)."""
    import importlib
    import pkgutil

    import splink  # noqa: F401

    for package in ("pipelines.ingest", "pipelines.standardize", "pipelines.resolve",
                    "pipelines.identify", "pipelines.golden"):
        path = importlib.import_module(package).__path__
        for found in pkgutil.iter_modules(path, prefix=f"{package}."):
            importlib.import_module(found.name)
    for name in ("report", "report_html", "retention", "data_docs", "incremental"):  # not Airflow's
        importlib.import_module(f"pipelines.orchestration.{name}")
