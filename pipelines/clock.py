"""The one place the project reads the wall clock.

Stage logic never calls it: stages work from the run's export date and logical date, so a rerun
gives the same outputs. The clock only stamps what people and operators do — when a run's stages
started and finished, when a steward decided, when a benchmark ran — and picks `make run`'s default
date. Setting UCV_NOW (ISO 8601, e.g. 2026-11-23T02:00:00+00:00) pins it, so those stamps are
reproducible too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time in UTC, or the time pinned by UCV_NOW (naive values are read as UTC)."""
    pinned = os.environ.get("UCV_NOW")
    if not pinned:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(pinned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
