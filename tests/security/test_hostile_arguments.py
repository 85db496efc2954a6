"""SQL injection and hostile values on the command line (issue 15, findings 5 and 7).

Every run id and date option of every `ucv` command refuses an injection attempt with one line
(exit 2, no traceback); hostile `ucv resolve` JSON ends in one line; and values that are data
(`ucv lookup` keys) are bound as parameters, so an injection attempt is just a key nobody has.
"""

from __future__ import annotations

import json

import duckdb
import pytest
import typer.main

from pipelines.cli import app, main

INJECTIONS = ["2026-11-24' OR '1'='1", "2026-11-24'; DROP TABLE customers; --",
              '2026-11-24" OR 1=1 --', "../../2026-11-24"]
DATE_OPTIONS = {"run_id", "export_date", "at"}
# benign values for the other required options, so only the hostile one can be refused
REQUIRED = {"landing": "{tmp}", "truth": "{tmp}", "records": "{tmp}/r.parquet",
            "truth_dir": "{tmp}", "decision": "must_link", "by": "x", "reason": "y",
            "source": "sales", "out": "{tmp}/out", "run_id": "2026-11-22",
            "export_date": "2026-11-22"}


def _date_cases() -> list[tuple[str, str, list[str]]]:
    cases = []
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            if param.name not in DATE_OPTIONS:
                continue
            argv = [name]
            for other in command.params:
                if other.required and other.name != param.name:
                    argv += [other.opts[0], REQUIRED[other.name]]
            if name == "review-decide":  # a pair, or a review row of a run
                argv += (["--review-id", "r1"] if param.name == "run_id" else
                         ["--pair", "sales:L1", "claims:C1", "--overrides", "{tmp}/o.csv"])
            cases.append((name, param.opts[0], argv))
    return cases


DATE_CASES = _date_cases()


def test_the_cases_cover_every_date_and_run_id_option():
    commands = {name for name, _, _ in DATE_CASES}
    assert {"ingest", "extract", "validate", "standardize", "link", "evaluate", "identify",
            "review-list", "review-decide", "golden", "publish", "export-marketing",
            "golden-accuracy", "run", "generate"} <= commands


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UCV_DEBUG", raising=False)
    return tmp_path


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1, out + err
    assert len(lines[0]) < 400
    return lines[0]


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize(("command", "option", "argv"), DATE_CASES,
                         ids=[f"{c} {o}" for c, o, _ in DATE_CASES])
def test_an_injection_in_a_run_id_or_date_is_refused_in_one_line(command, option, argv,
                                                                 injection, isolated, capsys):
    argv = [a.replace("{tmp}", str(isolated)) for a in argv] + [option, injection]
    assert main(argv) in (1, 2), argv  # 2: a malformed argument; 1: refused by the data check
    line = _one_error_line(capsys)
    assert any(w in line for w in (option, "run id", "YYYY-MM-DD", "ISO date")), line
    assert not (isolated / "o.csv").exists()  # review-decide wrote nothing


@pytest.mark.parametrize(("record", "words"), [
    ("[1, 2]", "JSON object"),
    ("{not json", "not valid JSON"),
    ('"a string"', "JSON object"),
    ("[" * 5000 + "]" * 5000, "JSON"),
    ('{"a":' * 5000 + "1" + "}" * 5000, "JSON"),
    (json.dumps({"name": "x" * 100_000}), "bytes"),
])
def test_hostile_resolve_json_ends_in_one_line(record, words, isolated, capsys):
    assert main(["resolve", "--source", "sales", "--record", record]) == 2
    assert words in _one_error_line(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--id", "--phone", "--email", "--policy", "--name"])
def test_lookup_keys_are_data_not_sql(option, canary_run, capsys):
    warehouse = canary_run.home / "warehouse" / "ucv.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customers = con.execute("SELECT count(*) FROM customers").fetchall()[0][0]
    for injection in ("x' OR '1'='1", "x'; DROP TABLE customers; --", "%' OR 1=1 --"):
        code = main(["lookup", option, injection, "--warehouse", str(warehouse)])
        out, err = capsys.readouterr()
        assert code in (0, 1) and "Traceback" not in out + err
        assert "Parser Error" not in out + err and "Binder Error" not in out + err
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == customers
