"""Argument checks shared by every `ucv` command: each refuses bad input with one clear line.

A usage problem (malformed run id, date, JSON, number) raises `typer.BadParameter` (exit code 2);
a data problem (no such run, no warehouse yet) raises `DataProblem` (exit code 1). `pipelines.cli`
prints either as one line, never a traceback. Nothing heavy is imported here.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import typer

# Run ids are export dates: ten characters, digits and dashes only, so a run id can never carry
# a path, a quote or SQL into a file name or a query.
RUN_ID_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A real-time record is one source row: a few KiB. The limits keep a hostile payload cheap.
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORD_DEPTH = 8


class DataProblem(typer.TyperException):
    """A well-formed request the data cannot satisfy (no such run, no warehouse): exit code 1."""

    exit_code = 1


def shown(value: Any, limit: int = 40) -> str:
    """A user's value quoted for an error line: escaped control characters, cut to `limit`."""
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _date_problem(value: str) -> str | None:
    """Why `value` is not a date written YYYY-MM-DD, or None when it is one."""
    if not RUN_ID_PATTERN.fullmatch(value):
        return "not written YYYY-MM-DD"
    try:
        date.fromisoformat(value)
    except ValueError:
        return "not a calendar date"
    return None


def iso_date(value: str | None) -> str | None:
    """A calendar date written YYYY-MM-DD (None passes: the option was not given)."""
    if value is not None and (problem := _date_problem(value)):
        raise typer.BadParameter(f"{shown(value)} is {problem}")
    return value


def run_id(value: str | None) -> str | None:
    """A run id: the export date of the run, YYYY-MM-DD."""
    if value is not None and (problem := _date_problem(value)):
        raise typer.BadParameter(f"{shown(value)} is not a run id (a run id is the run's export "
                                 f"date, YYYY-MM-DD): {problem}")
    return value


def existing_run(run: str, runs_dir: Path | None = None):
    """The folders of a run that exists on disk; `DataProblem` naming the folder otherwise."""
    from pipelines.settings import RunPaths

    paths = RunPaths.for_run(run, base=runs_dir)
    if not paths.root.is_dir():
        raise DataProblem(f"no run {run}: {paths.root} does not exist (a run folder is written "
                          "by `ucv run`, `ucv ingest` or the nightly DAG)")
    return paths


def existing_file(path: Path, what: str) -> Path:
    """A file that must exist before the command can start."""
    if not path.is_file():
        raise DataProblem(f"{what} {path} does not exist" if not path.exists()
                          else f"{what} {path} is not a file")
    return path


def json_record(text: str, *, what: str = "--record", max_bytes: int = MAX_RECORD_BYTES,
                max_depth: int = MAX_RECORD_DEPTH) -> dict[str, Any]:
    """One record given as a JSON object: at most `max_bytes` bytes, nested at most `max_depth`."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise typer.BadParameter(f"{what}: {size:,} bytes of JSON, more than the "
                                 f"{max_bytes:,} a record may have")
    try:
        payload = json.loads(text)
    except RecursionError:
        raise typer.BadParameter(f"{what}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise typer.BadParameter(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise typer.BadParameter(f"{what}: a JSON object {{...}} is needed, not a JSON "
                                 f"{_json_kind(payload)}")
    if _depth(payload) > max_depth:
        raise typer.BadParameter(f"{what}: JSON nested deeper than {max_depth} levels")
    return payload


def json_record_file(path: Path, *, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """A record from a JSON file, with the same limits as `json_record` (size checked first)."""
    existing_file(path, "record file")
    if path.stat().st_size > max_bytes:
        raise typer.BadParameter(f"--file {path}: {path.stat().st_size:,} bytes, more than the "
                                 f"{max_bytes:,} a record may have")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"--file {path}: not UTF-8 text (byte {exc.start})") from None
    return json_record(text, what=f"--file {path}", max_bytes=max_bytes)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (1 for a flat object)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def published_warehouse(path: Path | None = None) -> Path:
    """The warehouse a command reads: `path`, else the published one; `DataProblem` if absent."""
    from pipelines import settings

    warehouse = Path(path) if path else settings.warehouse_file()
    if warehouse.is_dir():
        warehouse = warehouse / settings.warehouse_file().name
    if not warehouse.is_file():
        raise DataProblem(f"no warehouse at {warehouse} (publish one first: `make run` or "
                          "`ucv run --date YYYY-MM-DD`)")
    return warehouse
