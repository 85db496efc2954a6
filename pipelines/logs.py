"""Logging for the pipeline's own business lines, and library noise kept at WARNING.

Each stage ends with one line on the `ucv.stage` logger: the stage, its status, its seconds and
its counts (rows read/accepted/quarantined, pairs, clusters, rows written, thresholds), never a
value from a record. Under Airflow those lines land in the task log; `ucv` prints them on stderr
when UCV_LOG_LEVEL=INFO.
"""

from __future__ import annotations

import logging
import os
from typing import Any

# Libraries whose INFO output buries the pipeline's own lines in a task log.
NOISY_LIBRARIES = ("great_expectations", "splink", "py4j", "numexpr", "urllib3", "faker",
                   "filelock", "altair", "asyncio", "fsspec", "matplotlib", "PIL")
STAGE_LOGGER = "ucv.stage"


class LibraryNoise(logging.Filter):
    """Drops the noisy libraries' records below WARNING at the handler: some set their own
    module loggers to INFO when imported (Great Expectations does), so levels alone do not hold."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.name.startswith(NOISY_LIBRARIES)


def quiet_libraries(level: int = logging.WARNING) -> None:
    """Keep the noisy libraries at `level` and above on every root handler (idempotent)."""
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(level)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LibraryNoise) for f in handler.filters):
            handler.addFilter(LibraryNoise(level))


def configure_cli_logging() -> None:
    """`ucv`: the pipeline's lines on stderr at UCV_LOG_LEVEL (default WARNING: quiet)."""
    level = os.environ.get("UCV_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()


def counts_text(counts: dict[str, Any]) -> str:
    """`key=value` pairs, nested dicts flattened with dots: one grep-able line."""
    parts = []
    for key, value in counts.items():
        if isinstance(value, dict):
            parts += [f"{key}.{k}={v}" for k, v in value.items()
                      if not isinstance(v, dict | list)]
        elif not isinstance(value, list):
            parts.append(f"{key}={value}")
    return " ".join(parts)
