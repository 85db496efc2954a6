"""One business line per stage with its counts; library noise below WARNING never reaches a log."""

from __future__ import annotations

import io
import logging

from pipelines.logs import counts_text, quiet_libraries
from pipelines.orchestration.run_state import record_stage, start_run_state
from pipelines.settings import RunPaths


def test_stage_lines_carry_counts_and_library_info_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level, root.level = root.level, logging.INFO
    try:
        run = RunPaths.for_run("2026-11-22").ensure()
        start_run_state(run, logical_date=None, export_date="2026-11-22", landing_dir=tmp_path,
                        orchestrator="test")
        with record_stage(run, "validate.sales") as counts:
            # a module logger Great Expectations sets to INFO itself when imported
            noisy = logging.getLogger("great_expectations.data_context.types.base")
            noisy.setLevel(logging.INFO)
            noisy.info("Created temporary directory for ephemeral docs site")
            noisy.warning("a real warning")
            counts.update(rows_read=175, rows_accepted=174, rows_quarantined=1,
                          failed_checks={"birth_date_format": 1})
    finally:
        root.removeHandler(handler)
        root.level = old_level
    text = out.getvalue()
    assert "ephemeral docs site" not in text and "a real warning" in text
    assert ("run=2026-11-22 stage=validate.sales status=success" in text
            and "rows_read=175 rows_accepted=174 rows_quarantined=1 "
                "failed_checks.birth_date_format=1" in text)


def test_counts_text_flattens_one_level():
    assert counts_text({"a": 1, "b": {"c": 2, "d": {"e": 3}}, "l": [1]}) == "a=1 b.c=2"


def test_quiet_libraries_is_idempotent():
    handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(handler)
    try:
        quiet_libraries()
        quiet_libraries()
        assert len(handler.filters) == 1
    finally:
        logging.getLogger().removeHandler(handler)
