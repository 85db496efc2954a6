"""Concurrent calls combined into one execution, for work whose cost is mostly per call.

The service's slow steps cost about the same for one item as for several: a mapping's prepared
statements (~10 ms per execution whatever the row count: binding ~100 expressions over DuckDB's
vectors) and a name scan (rapidfuzz compares a batch of short queries to each value together).
So under load the items waiting at that moment share one execution: a caller that finds a runner
free takes every waiting item with it (its own included), the others wait for their result.
Alone, a call runs at once (no timer, no added latency). A batch that fails is rerun one item at
a time, so an item the work cannot take fails only its own caller.

Work that holds the GIL (a name scan) starves the threads that would bring the next items: when
the batch ends, the callers already in the service have not reached `submit` yet, and greedy
batching runs them one by one. A caller that announces itself on arrival (`arriving()`) lets a
free runner wait for it, up to `gather_seconds`: the batch waits only for callers known to be
on their way, so a lone caller still runs at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


# the announcement of the caller in this context (copied into the worker thread that submits):
# [batcher, consumed]
_ANNOUNCED: ContextVar[list | None] = ContextVar("batcher_announced", default=None)


class _Pending:
    """One item waiting, and its outcome once a batch ran it."""

    __slots__ = ("item", "result", "error", "done")

    def __init__(self, item: Any):
        self.item = item
        self.result: Any = None
        self.error: Exception | None = None
        self.done = False


class Batcher(Generic[Item, Result]):
    """`submit(item)` from any number of threads; `run(runner, items)` executes a batch on one of
    `runners` (e.g. one DuckDB connection each: two batches can run side by side) and returns one
    outcome per item, a result or an Exception for that item alone."""

    def __init__(self, runners: Sequence[Any],
                 run: Callable[[Any, list[Item]], Sequence[Result | Exception]], max_batch: int = 64,
                 gather_seconds: float = 0.0):
        if not runners:
            raise ValueError("a Batcher needs at least one runner")
        self._free = list(runners)
        self._run_batch = run
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self._pending: list[_Pending] = []
        self._arriving = 0  # callers announced (`arriving`) that have not submitted yet
        self._changed = threading.Condition()
        self.batches = 0  # executions, for tests and the bench
        self.items = 0

    def stats(self) -> dict[str, float]:
        """Executions and items so far, and the mean batch (what batching saved, for /health)."""
        with self._changed:
            return {"batches": self.batches, "items": self.items,
                    "mean_batch": round(self.items / self.batches, 2) if self.batches else 0.0}

    def submit(self, item: Item) -> Result:
        """The item's result, computed in a batch with the items waiting beside it."""
        mine = _Pending(item)
        announced = _ANNOUNCED.get()
        with self._changed:
            if announced is not None and announced[0] is self and not announced[1]:
                announced[1] = True
                self._arriving -= 1
            self._pending.append(mine)
            self._changed.notify_all()  # a runner gathering a batch may be waiting for this one
            while not mine.done:
                if self._free and self._pending:
                    runner = self._free.pop()
                    self._gather()
                    batch, self._pending = (self._pending[:self.max_batch],
                                            self._pending[self.max_batch:])
                    self._changed.release()
                    try:
                        self._run(runner, batch)
                    finally:
                        self._changed.acquire()
                        self._free.append(runner)
                        self._changed.notify_all()
                else:
                    self._changed.wait()
        if mine.error is not None:
            raise mine.error
        return mine.result

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a caller that will `submit` soon, from this context or a thread given a copy
        of it (around the whole request): a free runner may wait for it rather than run the
        items already waiting without it."""
        announced = [self, False]
        with self._changed:
            self._arriving += 1
        reset = _ANNOUNCED.set(announced)
        try:
            yield
        finally:
            _ANNOUNCED.reset(reset)
            with self._changed:
                if not announced[1]:  # left without submitting (an error before it)
                    announced[1] = True
                    self._arriving -= 1
                    self._changed.notify_all()

    def _gather(self) -> None:
        """(Holding the lock, with a runner taken) wait up to `gather_seconds` for announced
        callers that have not submitted yet."""
        if not self.gather_seconds:
            return
        deadline = time.monotonic() + self.gather_seconds
        while len(self._pending) < self.max_batch and self._arriving > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.wait(remaining)

    def _run(self, runner: Any, batch: list[_Pending]) -> None:
        try:
            try:
                outcomes = list(self._counted(runner, [p.item for p in batch]))
            except Exception:
                if len(batch) == 1:
                    raise
                outcomes = []  # find the item that broke the batch: each on its own
                for p in batch:
                    try:
                        outcomes.append(self._counted(runner, [p.item])[0])
                    except Exception as error:
                        outcomes.append(error)
        except Exception as error:
            outcomes = [error]
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                p.error = outcome
            else:
                p.result = outcome
            p.done = True

    def _counted(self, runner: Any, items: list[Item]) -> Sequence[Result | Exception]:
        outcomes = self._run_batch(runner, items)
        if len(outcomes) != len(items):
            raise RuntimeError(f"a batch of {len(items)} gave {len(outcomes)} outcomes")
        with self._changed:  # two batches may finish at once
            self.batches += 1
            self.items += len(items)
        return outcomes
