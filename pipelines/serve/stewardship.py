"""Steward decisions on review groups: must-link / cannot-link into the override file, 'not sure'
beside it (`not_sure.csv`, same columns, never applied), and which groups are decided already."""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass
from pathlib import Path

from pipelines.clock import utc_now
from pipelines.fileio import formula_unsafe
from pipelines.identify.overrides import (
    Override,
    OverridesInvalid,
    append_decision_rows,
    append_override,
    latest_decisions,
    load_overrides,
    must_link_conflicts,
    utc_timestamp,
)
from pipelines.identify.review import group_decision_pairs

DECISIONS = ("must_link", "cannot_link", "not_sure")
_WRITE_LOCK = threading.Lock()  # one writer at a time: the file is checked, then appended


@dataclass(frozen=True)
class Written:
    decision: str
    pairs: list[tuple[str, str]]
    file: Path
    decided_at: str


def decide_group(pairs: list[dict], decision: str, decided_by: str, reason: str,
                 overrides_file: Path, not_sure_file: Path) -> Written:
    """Record one steward decision for a group of review rows; raises OverridesInvalid when the
    decision contradicts earlier ones (the file is left unchanged)."""
    if decision not in DECISIONS:
        raise OverridesInvalid([f"decision {decision!r} is not one of {DECISIONS}"])
    if not decided_by.strip() or not reason.strip():
        raise OverridesInvalid(["decided_by and reason are required"])
    chosen = group_decision_pairs(pairs, "cannot_link" if decision == "not_sure" else decision)
    if not chosen:
        raise OverridesInvalid(["the group has no record pairs"])
    at = utc_timestamp(utc_now())
    with _WRITE_LOCK:
        if decision == "not_sure":
            _append_not_sure(not_sure_file, chosen, decided_by.strip(), at, reason.strip())
            return Written(decision, chosen, not_sure_file, at)
        # check every pair together first, so a group is written whole or not at all
        existing = load_overrides(overrides_file)
        candidates = [Override(min(left, right), max(left, right), decision, decided_by, at, reason,
                               line=10**9 + i) for i, (left, right) in enumerate(chosen)]
        conflicts = must_link_conflicts(latest_decisions([*existing, *candidates]))
        if conflicts:
            raise OverridesInvalid(conflicts)
        for left, right in chosen:
            append_override(overrides_file, left, right, decision, decided_by, at, reason)
    return Written(decision, chosen, overrides_file, at)


def decided_pairs(overrides_file: Path) -> dict[tuple[str, str], dict]:
    """Record pairs with a steward decision in force: pair -> decision, who, when, why."""
    return {o.pair: {"decision": o.decision, "decided_by": o.decided_by, "decided_at": o.decided_at,
                     "reason": o.reason} for o in load_overrides(overrides_file)}


def not_sure_pairs(path: Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pairs: dict[tuple[str, str], dict] = {}
    for raw in rows:
        row = {k: formula_unsafe(v or "") for k, v in raw.items() if k}
        left, right = row.get("source_record_id_l", ""), row.get("source_record_id_r", "")
        if left and right:
            pairs[(min(left, right), max(left, right))] = row
    return pairs


def _append_not_sure(path: Path, pairs: list[tuple[str, str]], by: str, at: str, reason: str) -> None:
    append_decision_rows(path, [(left, right, "not_sure", by, at, reason) for left, right in pairs])
