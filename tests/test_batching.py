"""`pipelines.batching.Batcher`: callers waiting together share one execution; announced callers
are waited for (briefly), a lone caller never is; a failing item fails only its own caller."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.batching import Batcher


def squares(runner, items):
    return [i * i for i in items]


def test_a_lone_caller_runs_at_once_even_with_a_gather_window() -> None:
    batcher = Batcher([None], squares, gather_seconds=5.0)
    started = time.monotonic()
    with batcher.arriving():
        assert batcher.submit(7) == 49
    assert time.monotonic() - started < 1.0  # announced and already submitted: nobody to wait for
    assert batcher.stats() == {"batches": 1, "items": 1, "mean_batch": 1.0}


def test_a_free_runner_waits_for_announced_callers_and_runs_them_together() -> None:
    batcher = Batcher([None], squares, gather_seconds=5.0)
    gate = threading.Event()
    announced = threading.Semaphore(0)

    def late(i: int) -> int:
        with batcher.arriving():  # on its way (a request parsed, not yet at the batcher)
            announced.release()
            gate.wait(5)
            return batcher.submit(i)

    with ThreadPoolExecutor(4) as pool:
        others = [pool.submit(late, i) for i in (2, 3, 4)]
        for _ in others:
            assert announced.acquire(timeout=5)
        first = pool.submit(batcher.submit, 1)
        time.sleep(0.2)
        assert not first.done()  # the runner waits: three callers are on their way
        gate.set()
        results = [first.result(10), *(f.result(10) for f in others)]
    assert results == [1, 4, 9, 16]
    assert batcher.stats()["batches"] == 1


def test_the_gather_window_is_bounded() -> None:
    batcher = Batcher([None], squares, gather_seconds=0.2)
    entered, leave = threading.Event(), threading.Event()

    def announced_but_never_submits() -> None:
        with batcher.arriving():
            entered.set()
            leave.wait(10)

    other = threading.Thread(target=announced_but_never_submits)
    other.start()
    assert entered.wait(5)
    started = time.monotonic()
    assert batcher.submit(3) == 9  # waits for the other caller, but no longer than the window
    assert 0.15 < time.monotonic() - started < 3.0
    leave.set()
    other.join(5)


def test_an_announced_caller_that_leaves_without_submitting_is_not_waited_for() -> None:
    batcher = Batcher([None], squares, gather_seconds=5.0)
    with pytest.raises(RuntimeError):
        with batcher.arriving():
            raise RuntimeError("the request failed before it reached the batcher")
    started = time.monotonic()
    assert batcher.submit(2) == 4
    assert time.monotonic() - started < 1.0


def test_an_item_that_breaks_a_batch_fails_alone() -> None:
    def refuse_thirteen(runner, items):
        if 13 in items:
            raise ValueError("13")
        return [i + 1 for i in items]

    batcher = Batcher([None], refuse_thirteen)
    release = threading.Event()
    original = batcher._run_batch

    def first_waits(runner, items):
        release.wait(5)
        return original(runner, items)

    batcher._run_batch = first_waits
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.submit, i) for i in (1, 13, 5, 8)]
        time.sleep(0.2)
        release.set()
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result(10))
            except ValueError as error:
                outcomes.append(str(error))
    assert outcomes == [2, "13", 6, 9]


def test_a_run_that_returns_the_wrong_number_of_outcomes_is_an_error() -> None:
    batcher = Batcher([None], lambda runner, items: [])
    with pytest.raises(RuntimeError, match="gave 0 outcomes"):
        batcher.submit(1)
