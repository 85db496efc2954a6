"""`ucv erase` end to end: a canary person planted in all four sources leaves no trace anywhere
in the data root after the erasure, nor after another night (the sources still send them), a
rerun of an older date, and the `make run` path (the latest landed date run again)."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest
from canary import EMAIL, NATIONAL_ID, PHONE, canary_hits, plant_canary
from orchestration_support import end_to_end_skip_reason, generate_sample, land
from typer.testing import CliRunner

from pipelines import settings
from pipelines.cli import app
from pipelines.identify.registry import read_state, registry_file
from pipelines.orchestration.run import run_pipeline

D1, D2, D3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)


def land_with_canary(home, sample, day: date) -> None:
    plant_canary(land(home, sample, day))


def canary_customers() -> set[str]:
    with duckdb.connect(str(settings.warehouse_file()), read_only=True) as con:
        return {r[0] for r in con.execute(
            "SELECT DISTINCT customer_id FROM source_records WHERE email = ? OR national_id = ?",
            [EMAIL, NATIONAL_ID]).fetchall()}


def ingest_counts(day: date) -> dict:
    path = settings.data_root() / "runs" / day.isoformat() / "report" / "ingest_counts.json"
    return json.loads(path.read_text(encoding="utf-8"))["sources"]


@pytest.mark.slow
def test_an_erased_canary_leaves_no_trace_after_erase_nights_reruns_and_make_run(
        tmp_path, monkeypatch):
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    sample = generate_sample(tmp_path / "sample")
    home = tmp_path / "home"
    monkeypatch.setenv("UCV_HOME", str(home))
    for day in (D1, D2):
        land_with_canary(home, sample, day)
    run_pipeline(D1)
    run_pipeline(D2)
    before = canary_hits(home)
    assert len(before) > 20, "the canary should be everywhere before the erasure"
    assert any("/export/" in hit for hit in before), "the canary opted in: in the marketing file"
    canaries = canary_customers()
    assert canaries

    result = CliRunner().invoke(app, ["erase", "--email", EMAIL, "--national-id", NATIONAL_ID,
                                      "--phone", PHONE])
    assert result.exit_code == 0, result.output
    assert EMAIL not in result.output and NATIONAL_ID not in result.output

    assert canary_hits(home) == []
    report = json.loads((home / "registry" / "erasures" / "0001.json").read_text())
    assert report["records_erased"] == 4 and set(report["customers_erased"]) == canaries
    assert EMAIL not in json.dumps(report) and NATIONAL_ID not in json.dumps(report)
    listed = [loc["location"] for loc in report["locations"]]
    for hit in before:  # every place that held the canary is in the report
        relative = str(hit.split(":")[0]).removeprefix(f"{home}/")
        assert any(relative == loc or relative.startswith(loc + "/") for loc in listed), relative
    history = read_state(registry_file()).history
    erased = history[history["event"] == "erased"]
    assert set(erased["customer_id"]) == canaries

    # another night: every source still sends the canary; they are dropped and counted `erased`
    land_with_canary(home, sample, D3)
    run_pipeline(D3)
    assert canary_hits(home) == []
    counts = ingest_counts(D3)
    assert sum(s["rows_erased"] for s in counts.values()) == 4
    for source in counts.values():
        assert source["rows_read"] == (source["rows_accepted"] + source["rows_quarantined"]
                                       + source["rows_erased"])

    # a rerun of an older date: rebuilt from its (redacted) landed files, not published
    run_pipeline(D1)
    assert canary_hits(home) == []
    assert sum(s["rows_erased"] for s in ingest_counts(D1).values()) == 4

    # the `make run` path: the most recent landed date, run again
    run_pipeline(max(date.fromisoformat(p.name) for p in (home / "landing").iterdir()))
    assert canary_hits(home) == []
    assert canary_customers() == set()
    state = read_state(registry_file())
    assert state.live_run_id == D3.isoformat()
    assert not set(state.live_map["customer_id"]) & canaries  # erased IDs never come back
