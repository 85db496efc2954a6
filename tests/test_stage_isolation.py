"""`ucv run` runs each stage in a forked process: results and errors come back, memory does not."""

from __future__ import annotations

import os
import signal

import pytest

from pipelines.ingest.errors import SourceRejected
from pipelines.orchestration.isolation import StageProcessDied, run_in_child


def test_the_result_comes_back_from_another_process() -> None:
    assert run_in_child("t", lambda: {"pid": os.getpid(), "rows": [1, 2]})["pid"] != os.getpid()


def test_an_error_keeps_its_class_attributes_and_the_childs_traceback() -> None:
    def reject():
        raise SourceRejected("sales", "sales.csv", "email", "not_null", "3 rows")

    with pytest.raises(SourceRejected) as caught:
        run_in_child("validate.sales", reject)
    assert str(caught.value) == str(SourceRejected("sales", "sales.csv", "email", "not_null", "3 rows"))
    assert (caught.value.source, caught.value.column, caught.value.rule) == ("sales", "email", "not_null")
    assert "in the stage's process" in caught.value.__notes__[-1]
    assert "in reject" in caught.value.__notes__[-1]


def test_a_stage_whose_process_is_killed_is_an_error_naming_it() -> None:
    with pytest.raises(StageProcessDied, match=r"stage golden: .*SIGKILL"):
        run_in_child("golden", lambda: os.kill(os.getpid(), signal.SIGKILL))


def test_memory_a_stage_grows_is_gone_when_it_ends() -> None:
    import psutil

    def grow() -> int:
        start = psutil.Process().memory_info().rss
        block = bytearray(600 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # every page touched
        return psutil.Process().memory_info().rss - start

    before = psutil.Process().memory_info().rss
    assert run_in_child("t", grow) > 500 * 2**20
    assert psutil.Process().memory_info().rss - before < 100 * 2**20


def test_the_environment_overrides_the_callers_choice(monkeypatch) -> None:
    from pipelines.orchestration.isolation import use_stage_processes

    monkeypatch.delenv("UCV_STAGE_PROCESSES", raising=False)
    assert use_stage_processes(True) and not use_stage_processes(False)
    monkeypatch.setenv("UCV_STAGE_PROCESSES", "0")
    assert not use_stage_processes(True)
    monkeypatch.setenv("UCV_STAGE_PROCESSES", "1")
    assert use_stage_processes(False)


def test_ucv_run_forks_its_stages_and_the_outputs_are_the_same(tmp_path, monkeypatch) -> None:
    """A fresh process (as `ucv run` is): the stages forked, the run identical to one in process."""
    import subprocess
    import sys

    from orchestration_support import EXPORT_DATE, generate_sample, land

    landing = generate_sample(tmp_path / "sample", customers=150)
    outputs = {}
    for mode in ("1", "0"):
        home = tmp_path / f"home-{mode}"
        land(home, landing, EXPORT_DATE)
        env = {**os.environ, "UCV_HOME": str(home), "UCV_STAGE_PROCESSES": mode}
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--date", EXPORT_DATE.isoformat()],
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        import duckdb

        with duckdb.connect(str(home / "warehouse" / "ucv.duckdb"), read_only=True) as con:
            outputs[mode] = con.execute(
                "select customer_id, source_record_id from source_records order by all").fetchall()
    assert outputs["1"] and outputs["1"] == outputs["0"]
