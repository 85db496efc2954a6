"""The operations settings of the nightly run (schemas/operations.yaml): landing wait, run
deadline, alert channels, pools. Plain data, read without Airflow; the DAG and `make run` use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pipelines import settings


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class Operations:
    landing_wait: timedelta
    landing_poke: timedelta
    run_deadline: timedelta
    smtp_conn_id: str | None
    smtp_to: tuple[str, ...]
    smtp_from: str | None
    webhook_conn_id: str | None
    pools: tuple[Pool, ...] = field(default_factory=tuple)
    # nights reuse the previous night's unchanged records and pairs (docs/operations.md)
    incremental: bool = False

    def pool_of(self, task_id: str) -> str | None:
        return next((p.name for p in self.pools if task_id in p.tasks), None)


class OperationsConfigError(ValueError):
    """operations.yaml holds a value the DAG cannot use; the message names the key."""


def load_operations(path: Path | None = None) -> Operations:
    """Read and check operations.yaml (default: settings.OPERATIONS_FILE)."""
    import yaml

    path = Path(path or settings.OPERATIONS_FILE)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    landing = raw.get("landing") or {}
    alerts = raw.get("alerts") or {}
    smtp, webhook = alerts.get("smtp") or {}, alerts.get("webhook") or {}
    pools = tuple(
        Pool(name=name, slots=int(_positive(spec.get("slots", 1), path, f"pools.{name}.slots")),
             description=str(spec.get("description", "")), tasks=tuple(spec.get("tasks") or ()))
        for name, spec in (raw.get("pools") or {}).items())
    return Operations(
        landing_wait=timedelta(minutes=_positive(landing.get("wait_minutes", 240), path,
                                                 "landing.wait_minutes")),
        landing_poke=timedelta(seconds=_positive(landing.get("poke_seconds", 300), path,
                                                 "landing.poke_seconds")),
        run_deadline=timedelta(minutes=_positive(raw.get("run_deadline_minutes", 420), path,
                                                 "run_deadline_minutes")),
        smtp_conn_id=smtp.get("conn_id"), smtp_to=tuple(smtp.get("to") or ()),
        smtp_from=smtp.get("from_email"), webhook_conn_id=webhook.get("conn_id"), pools=pools,
        incremental=_flag(raw.get("incremental", False), path, "incremental"))


def _flag(value, path: Path, key: str) -> bool:
    if not isinstance(value, bool):
        raise OperationsConfigError(f"{path}: {key} must be true or false, not {value!r}")
    return value


def _positive(value, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise OperationsConfigError(f"{path}: {key} must be a positive number, not {value!r}")
    return value


def ensure_pools(env: dict[str, str], log_file: Path | None = None,
                 operations: Operations | None = None) -> None:
    """`airflow pools set` for every configured pool (idempotent): a task naming a pool that does
    not exist is never scheduled."""
    import subprocess
    import sys

    for pool in (operations or load_operations()).pools:
        cmd = [sys.executable, "-m", "airflow", "pools", "set", pool.name, str(pool.slots),
               pool.description]
        with open(log_file or "/dev/null", "a") as out:
            done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"airflow pools set {pool.name} failed (exit code "
                               f"{done.returncode}); see {log_file}")
