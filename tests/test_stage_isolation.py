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
        block = bytearray(600 * 2**20)  # 600 MiB touched
        block[::4096] = b"x" * len(block[::4096])
        return psutil.Process().memory_info().rss

    before = psutil.Process().memory_info().rss
    in_child = run_in_child("t", grow)
    assert in_child - before > 500 * 2**20
    assert psutil.Process().memory_info().rss - before < 100 * 2**20


def test_it_can_be_switched_off_for_a_debugger(monkeypatch) -> None:
    monkeypatch.setenv("UCV_STAGE_PROCESSES", "0")
    assert run_in_child("t", os.getpid) == os.getpid()
