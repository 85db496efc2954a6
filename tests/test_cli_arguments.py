"""Every `ucv` command refuses bad arguments with one line and the right exit code, never a
traceback: 2 for a malformed argument, 1 for data the command cannot use (no such run...)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from pipelines import cli_args
from pipelines.cli import app, main

USAGE, DATA = 2, 1
INJECTION = "2026-11-24' OR '1'='1"

# (argv, exit code, words the one error line must hold): at least one case per command.
BAD_ARGUMENTS = [
    (["generate", "--out", "{tmp}/g", "--customers", "-5"], USAGE, "--customers"),
    (["generate", "--out", "{tmp}/g", "--customers", "5", "--records", "9"], USAGE, "exactly one"),
    (["generate", "--out", "{tmp}/g", "--customers", "5", "--export-date", "2026-02-30"], USAGE,
     "--export-date"),
    (["generate", "--out", "{tmp}/g", "--customers", "5", "--config", "{tmp}/none.yaml"], USAGE,
     "--config"),
    (["ingest", "--landing", "{tmp}", "--run-id", INJECTION], USAGE, "run id"),
    (["ingest", "--landing", "{tmp}/missing", "--run-id", "2026-11-22"], USAGE, "--landing"),
    (["extract", "--landing", "{tmp}", "--run-id", "../../etc"], USAGE, "run id"),
    (["validate", "--run-id", "2026-13-01"], USAGE, "not a calendar date"),
    (["validate", "--run-id", "2026-11-22"], DATA, "no run 2026-11-22"),
    (["standardize", "--run-id", "2026-11-22"], DATA, "no run 2026-11-22"),
    (["train", "--records", "{tmp}/nothing.parquet"], USAGE, "--records"),
    (["link", "--run-id", "x; DROP TABLE customers"], USAGE, "run id"),
    (["link", "--run-id", "2026-11-22"], DATA, "no run 2026-11-22"),
    (["evaluate", "--run-id", "2026-11-22", "--truth", "{tmp}/no-truth"], USAGE, "--truth"),
    (["evaluate", "--run-id", "2026-11-22", "--truth", "{tmp}"], DATA, "no run"),
    (["identify", "--run-id", "20261122"], USAGE, "run id"),
    (["identify", "--run-id", "2026-11-22"], DATA, "no run"),
    (["overrides-check", "--overrides", "{tmp}/none.csv"], USAGE, "none.csv"),
    (["review-list", "--run-id", "2026-11-22", "--limit", "0"], USAGE, "--limit"),
    (["review-list", "--run-id", "2026-11-22"], DATA, "no run"),
    (["review-decide", "--decision", "must_link", "--by", "x", "--reason", "y"], USAGE,
     "--pair"),
    (["review-decide", "--decision", "must_link", "--by", "x", "--reason", "y",
      "--review-id", "r1", "--run-id", INJECTION], USAGE, "run id"),
    (["resolve", "--source", "sales", "--record", "[1, 2]"], USAGE, "JSON object"),
    (["resolve", "--source", "sales", "--record", "{not json"], USAGE, "not valid JSON"),
    (["resolve", "--source", "sales", "--record", "[" * 5000 + "]" * 5000], USAGE, "JSON"),
    (["resolve", "--source", "sales", "--record", '{"a":' * 5000 + "1" + "}" * 5000], USAGE,
     "JSON"),
    (["resolve", "--source", "sales", "--record", json.dumps({"x": "y" * 70_000})], USAGE,
     "bytes"),
    (["resolve", "--source", "sales", "--record", "{}", "--top-k", "-1"], USAGE, "--top-k"),
    (["resolve", "--source", "sales", "--record", "{}", "--warehouse", "{tmp}/no.duckdb"], DATA,
     "no warehouse"),
    (["resolve", "--source", "sales", "--file", "{tmp}/none.json"], DATA, "none.json"),
    (["resolve-bench", "--queries", "0"], USAGE, "--queries"),
    (["resolve-bench", "--warehouse", "{tmp}/no.duckdb"], DATA, "no warehouse"),
    (["golden", "--run-id", INJECTION], USAGE, "run id"),
    (["golden", "--run-id", "2026-11-22", "--export-date", "yesterday"], USAGE, "--export-date"),
    (["golden", "--run-id", "2026-11-22"], DATA, "no run"),
    (["publish", "--run-id", "2026-11-22"], DATA, "no run"),
    (["export-marketing", "--run-id", "2026-11-22", "--export-date", "2026-11-31"], USAGE,
     "calendar date"),
    (["lookup"], USAGE, "exactly one"),
    (["lookup", "--phone", "1", "--email", "a@b.c"], USAGE, "exactly one"),
    (["lookup", "--id", "C1", "--limit", "-3"], USAGE, "--limit"),
    (["lookup", "--id", "C1", "--warehouse", "{tmp}/no.duckdb"], DATA, "no warehouse"),
    (["data-dictionary", "--check", "extra"], USAGE, "extra"),
    (["sql", "--warehouse", "{tmp}/no.duckdb"], DATA, "no warehouse"),
    (["sql", "--mirror", "-c", "SELECT 1"], DATA, "no published Parquet mirror"),
    (["golden-accuracy", "--truth-dir", "{tmp}/none"], USAGE, "--truth-dir"),
    (["golden-accuracy", "--truth-dir", "{tmp}", "--warehouse", "{tmp}/no.duckdb"], DATA,
     "no warehouse"),
    (["run", "--date", "22.11.2026"], USAGE, "--date"),
    (["run", "--date", INJECTION], USAGE, "--date"),
    (["run", "--date", "2026-11-22"], DATA, "no exports landed"),
    (["bench", "--records", "-5"], USAGE, "--records"),
    (["bench-backends", "--records", "-5"], USAGE, "--records"),
    (["bench-incremental", "--records", "-5"], USAGE, "--records"),
    (["bench-train", "--records", "{tmp}/no.parquet"], USAGE, "--records"),
    (["bench-serve", "--warehouse", "{tmp}/no.duckdb"], USAGE, "no warehouse"),
    (["serve", "--port", "99999"], USAGE, "--port"),
    (["bench-backends", "--records", "0"], USAGE, "--records"),
    (["sql", "--warehouse", "{tmp}/no.duckdb", "-c", "SELECT 1"], DATA, "no warehouse"),
    (["no-such-command"], USAGE, "no-such-command"),
]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("UCV_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UCV_DEBUG", raising=False)
    return tmp_path


@pytest.mark.parametrize(("argv", "code", "words"), BAD_ARGUMENTS,
                         ids=[" ".join(a)[:60] for a, _, _ in BAD_ARGUMENTS])
def test_bad_arguments_fail_with_one_line_and_the_right_exit_code(argv, code, words, isolated,
                                                                 capsys):
    argv = [a.replace("{tmp}", str(isolated)) for a in argv]
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "UCV_DEBUG" not in lines[0], lines[0]  # a checked refusal, not the safety net
    assert words.lower() in lines[0].lower(), lines[0]
    assert len(lines[0]) < 400  # a 5,000-level payload is not echoed back


def test_every_command_has_a_bad_argument_case():
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    covered = {argv[0] for argv, _, _ in BAD_ARGUMENTS}
    # `ucv erase` (just merged) refuses a missing key itself, exit 2, in its own words on stdout;
    # bringing it to the one-line stderr form is open work
    assert names - covered - {"erase"} == set()


def test_the_safety_net_turns_an_unexpected_error_into_one_line(isolated, capsys, monkeypatch):
    import importlib

    lookup_module = importlib.import_module("pipelines.golden.lookup")  # the module, not the name

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(lookup_module, "lookup", broken)
    (isolated / "w.duckdb").write_bytes(b"")
    assert main(["lookup", "--id", "C1", "--warehouse", str(isolated / "w.duckdb")]) == DATA
    err = capsys.readouterr().err
    assert err.strip() == ("error: ZeroDivisionError: a bug (an unexpected error; UCV_DEBUG=1 "
                           "shows the traceback)")


@pytest.mark.parametrize("value", ["2026-11-22", "2024-02-29"])
def test_run_ids_that_are_dates_pass(value):
    assert cli_args.run_id(value) == value


@pytest.mark.parametrize("value", [INJECTION, "2026-11-22 ", "２０２６-11-22", "2026-1-2",
                                   "2026-11-22\n", "2023-02-29", "", "../2026-11-22"])
def test_run_ids_that_are_not_dates_are_refused(value):
    import typer

    with pytest.raises(typer.BadParameter):
        cli_args.run_id(value)


def test_json_record_limits():
    import typer

    assert cli_args.json_record('{"name": "A", "address": {"city": "B"}}') == {
        "name": "A", "address": {"city": "B"}}
    deep = '{"a":' * 9 + "1" + "}" * 9
    with pytest.raises(typer.BadParameter, match="deeper than 8"):
        cli_args.json_record(deep)
    with pytest.raises(typer.BadParameter, match="not a JSON null"):
        cli_args.json_record("null")


def test_the_ucv_script_prints_one_line_and_no_traceback(tmp_path):
    ucv = os.path.join(os.path.dirname(sys.executable), "ucv")
    env = {**os.environ, "UCV_HOME": str(tmp_path)}
    env.pop("UCV_DEBUG", None)
    result = subprocess.run([ucv, "resolve", "--source", "sales", "--record",
                             "[" * 5000 + "]" * 5000], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == USAGE
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_help_is_fast_and_imports_no_heavy_library():
    probe = ("import sys, time; t = time.perf_counter(); import pipelines.cli; "
             "print(time.perf_counter() - t); "
             "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'numpy', 'splink', "
             "'great_expectations', 'rich.markdown') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[1] == "[]"
    ucv = os.path.join(os.path.dirname(sys.executable), "ucv")
    best = min(_timed([ucv, "--help"]) for _ in range(3))
    # Typer itself is most of the cost, so the bound is relative to importing Typer alone (0.21 s
    # vs 0.15 s of CPU here). CPU time, not wall time: on a loaded machine (CI beside other work)
    # wall time measured the scheduler (0.60 s vs 0.18 s once), CPU time the work.
    typer_alone = min(_timed([sys.executable, "-c", "import typer"]) for _ in range(3))
    assert best < 2 * typer_alone + 0.15, (best, typer_alone)


def _timed(cmd: list[str]) -> float:
    """CPU seconds (user + system) the command used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
