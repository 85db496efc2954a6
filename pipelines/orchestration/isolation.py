"""Each stage of `ucv run` in a process of its own, as Airflow runs each task.

Run one after another in one process, the stages' memory piles up: DuckDB's and Arrow's
allocators and Python's arenas keep what a stage freed, so at 1M records the night peaked at
6.5 GiB while its largest stage, run alone, peaks at 2.9 GiB. A forked child starts from the
parent's pages (imports done, nothing to load again: ~10 ms per stage), and whatever it grows
is returned to the system when it exits.

The child's return value comes back pickled; an exception comes back as itself (its type, so
callers catch what they always caught) with the child's traceback as a note. A child that dies
without answering (killed, out of memory) is an error naming the stage and the exit status.
`ucv run` and the bench use it; `run_pipeline` called from other code does not unless asked,
since forking a process whose other threads are inside DuckDB at that moment can crash the child
(seen in the test suite, whose processes also serve HTTP). `UCV_STAGE_PROCESSES=0` runs the stages
in the calling process (a debugger, a profiler), `=1` forks them.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "UCV_STAGE_PROCESSES"


class StageProcessDied(RuntimeError):
    """The stage's process ended without a result or an error (a signal, the OOM killer)."""


def use_stage_processes(default: bool) -> bool:
    """The caller's choice, unless UCV_STAGE_PROCESSES says otherwise."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


def run_in_child(name: str, step: Callable[[], T]) -> T:
    """`step()` in a forked child process; its result, or its exception raised here."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(step, writer), name=f"ucv-stage-{name}")
    child.start()
    writer.close()
    try:
        try:
            outcome = reader.recv()
        except EOFError:  # closed without a word: the child died
            outcome = None
        child.join()
    except BaseException:  # interrupted here (Ctrl-C, SIGTERM): the stage stops too
        child.terminate()
        child.join(30)
        raise
    finally:
        reader.close()
    if outcome is None:
        code = child.exitcode
        how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        raise StageProcessDied(f"stage {name}: its process ended without a result ({how}); "
                               "out of memory? see the system log (dmesg) and the run log")
    kind, value = outcome
    if kind == "ok":
        return value
    raise _rebuilt(value)


def _child(step: Callable[[], Any], writer) -> None:
    try:
        outcome: tuple[str, Any] = ("ok", step())
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        exc.add_note("in the stage's process:\n" + "".join(traceback.format_exception(exc)).rstrip())
        outcome = ("error", _portable(exc))
    try:
        writer.send(outcome)
    except Exception as error:  # a result that cannot be pickled
        writer.send(("error", _portable(RuntimeError(f"the stage's result could not be returned: {error}"))))
    finally:
        writer.close()


def _portable(exc: BaseException) -> tuple[type[BaseException], tuple, dict]:
    """An exception as (class, args, attributes): many exception classes take other arguments
    than the message they store in args (e.g. SourceRejected(file, column, rule, detail)) and
    do not unpickle; rebuilt from their parts they keep their class, message and attributes."""
    parts: tuple[type[BaseException], tuple, dict] = (type(exc), exc.args, dict(vars(exc)))
    try:
        pickle.loads(pickle.dumps(parts))
        return parts
    except Exception:  # something in it cannot travel: its text does
        notes = "\n".join(getattr(exc, "__notes__", []))
        return RuntimeError, (f"{type(exc).__name__}: {exc}\n{notes}",), {}


def _rebuilt(parts: tuple[type[BaseException], tuple, dict]) -> BaseException:
    cls, args, attributes = parts
    exc = cls.__new__(cls)
    exc.args = args
    vars(exc).update(attributes)
    return exc
