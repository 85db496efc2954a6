"""The run report: report/run_report.html (figures, last night beside tonight, the trend; see
report_html.py) and report/run_report.md (the same facts as plain tables, for diffs and mail).

The Markdown is built only from files the run wrote (run_state.json, report/ingest_counts.json,
resolved/resolve_summary.json, chart HTML files), so it can be rebuilt at any time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipelines import fileio
from pipelines.orchestration.run_state import read_run_state
from pipelines.settings import RunPaths

REPORT_FILE = "run_report.md"
HTML_REPORT_FILE = "run_report.html"
# Summary keys too long for a table cell (the HTML report shows them as tables of their own).
NOT_IN_MARKDOWN = {"models", "comparisons_by_blocking_rule"}


def write_run_report(run: RunPaths) -> Path:
    """Write report/run_report.md and report/run_report.html (each atomically, with the
    project's file modes); returns the .md."""
    from pipelines.orchestration.report_html import render_html_report

    run.report_dir.mkdir(parents=True, exist_ok=True)
    # the Markdown first: it needs nothing but the run's own files
    markdown = fileio.write_text(run.report_dir / REPORT_FILE, render_run_report(run))
    fileio.write_text(run.report_dir / HTML_REPORT_FILE, render_html_report(run))
    return markdown


def render_run_report(run: RunPaths) -> str:
    state = read_run_state(run)
    lines = [f"# Run report — {run.run_id}", ""]
    lines += _table(["", ""], [
        ["status", state.get("status")],
        ["export date (run id)", state.get("export_date")],
        ["logical date", state.get("logical_date")],
        ["orchestrator", state.get("orchestrator")],
        ["Airflow run id", state.get("airflow_run_id")],
        ["landing folder", state.get("landing_dir")],
        ["started / finished (UTC)", f"{state.get('started_at')} / {state.get('finished_at')}"],
        ["error", state.get("error")],
    ])
    lines += ["", "## Stages", ""]
    lines += _table(["stage", "status", "seconds", "peak RSS MiB", "counts"], [
        [name, s.get("status"), s.get("seconds"), s.get("peak_rss_mib"), _inline(s.get("counts"))]
        for name, s in state.get("stages", {}).items()])
    from pipelines.orchestration.report_figures import elapsed_stage_seconds

    elapsed = elapsed_stage_seconds({k: s.get("seconds") for k, s in state.get("stages", {}).items()})
    lines += ["", f"Stage time: {elapsed or 0:.1f} s (mapped per-source tasks counted as "
              "parallel). The HTML report beside this file has the figures and the trend.", ""]
    lines += _ingest_totals(run.report_dir / "ingest_counts.json")
    lines += _json_section("Ingest quality (report/ingest_counts.json)",
                           run.report_dir / "ingest_counts.json")
    lines += _json_section("Resolution (resolved/resolve_summary.json)",
                           run.resolved_dir / "resolve_summary.json")
    lines += _json_section("Marketing export (export_summary.json)",
                           run.root / "export_summary.json")
    charts = sorted(p for p in run.root.rglob("*.html") if p.is_file())
    lines += ["## Charts", ""]
    lines += [f"- [{p.stem}]({os.path.relpath(p, run.report_dir)})" for p in charts] or ["(none)"]
    lines.append("")
    return "\n".join(lines)


def _ingest_totals(path: Path) -> list[str]:
    """One line with the run's accounting: rows read = accepted + quarantined + erased (persons
    erased by `ucv erase`, dropped at extract), and the quarantined share."""
    if not path.exists():
        return []
    sources = json.loads(path.read_text(encoding="utf-8")).get("sources", {}).values()
    read = sum(s.get("rows_read", 0) for s in sources)
    accepted = sum(s.get("rows_accepted", 0) for s in sources)
    quarantined = sum(s.get("rows_quarantined", 0) for s in sources)
    erased = sum(s.get("rows_erased", 0) for s in sources)
    share = f" ({quarantined / read:.2%} quarantined)" if read else ""
    return [f"Rows read {read:,} = accepted {accepted:,} + quarantined {quarantined:,} + erased "
            f"{erased:,}{share}.", ""]


def _json_section(title: str, path: Path) -> list[str]:
    """A JSON summary as tables: one row per entry of each mapping, one table per nesting level."""
    lines = [f"## {title}", ""]
    if not path.exists():
        return lines + ["(not written by this run)", ""]
    data = json.loads(path.read_text(encoding="utf-8"))
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    if scalars:
        lines += _table(["figure", "value"], [[k, v] for k, v in scalars.items()]) + [""]
    for key, value in data.items():
        if key in NOT_IN_MARKDOWN:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for row in value.values() for c in row
                                         if c not in NOT_IN_MARKDOWN))
            lines += [f"**{key}**", ""]
            lines += _table([key, *columns], [[name, *(_inline(row.get(c)) for c in columns)]
                                              for name, row in value.items()]) + [""]
        elif isinstance(value, dict | list):
            lines += [f"**{key}**: {_inline(value)}", ""]
    return lines


def _inline(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_inline(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_inline(c) for c in row) + " |" for row in rows]
    return lines
