"""The identify stage: resolved clusters + steward overrides + the previous warehouse -> customer IDs.

IDs are carried forward from the ID registry (`pipelines/identify/registry.py`): its live state,
whatever date this run is for, so no rerun can hand a published ID to another customer.

Writes, in the run's `identified/` folder:
- `customer_map.parquet` — one row per source record: source_record_id, party_type, customer_id;
- `customer_id_history.parquet` — one row per ID event: every event in the registry plus this
  run's (their `publication` is the registry's next one; a rerun before publish replaces them);
- `registry_plan.json` — the registry publication this was based on, for publish to commit;
- `review_queue.parquet` — one row per pair a steward should decide;
- `identify_summary.json` — counts and what the overrides did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.identify.config import IdentifyConfig, load_config
from pipelines.identify.overrides import (
    DEFAULT_OVERRIDES_FILE,
    OverrideReport,
    apply_overrides,
    load_overrides,
)
from pipelines.identify.registry import (
    HISTORY_OUT_COLUMNS,
    empty_history,
    plan_token,
    read_state,
    write_plan,
)
from pipelines.identify.review import build_review_queue
from pipelines.identify.stable_ids import carry_forward_ids
from pipelines.settings import RunPaths, duckdb_config

log = logging.getLogger(__name__)


@dataclass
class IdentifyResult:
    """Paths written and the counts an operator looks at."""

    customer_map: Path
    customer_id_history: Path
    review_queue: Path
    summary: Path
    n_records: int = 0
    n_customers: int = 0
    n_kept: int = 0
    events: dict[str, int] = field(default_factory=dict)
    n_review: int = 0
    overrides: dict = field(default_factory=dict)


def assign_customer_ids(
    run: RunPaths,
    registry: Path | None,
    overrides_file: Path | None = None,
    config: IdentifyConfig | None = None,
) -> IdentifyResult:
    """Give every resolved record a stable customer ID, honouring steward overrides.

    `registry`: the ID registry file to carry IDs forward from (None: start from nothing).
    """
    config = config or load_config()
    overrides_file = overrides_file or DEFAULT_OVERRIDES_FILE
    match_pairs_file = run.resolved_dir / "match_pairs.parquet"

    clusters = read_clusters(run)
    overrides = load_overrides(overrides_file)
    report = OverrideReport()
    clusters = apply_overrides(clusters, match_pairs_file, overrides, config.match_weight, report)
    for problem in report.unknown_record_ids:
        log.warning("override names a record not in this run: %s", problem)
    for problem in report.cross_party_type:
        log.warning("override pairs a person with an organization, not applied: %s", problem)

    state = read_state(registry)
    carried = carry_forward_ids(clusters, state.live_map, state.history, run.run_id,
                                highest_issued=state.highest_sequence)
    events = carried.events.assign(publication=state.publication + 1)
    history = combine_history(state.history, events)
    queue = build_review_queue(match_pairs_file, carried.customer_map, overrides, config, run.run_id)

    out = run.identified_dir
    out.mkdir(parents=True, exist_ok=True)
    result = IdentifyResult(
        customer_map=out / "customer_map.parquet",
        customer_id_history=out / "customer_id_history.parquet",
        review_queue=out / "review_queue.parquet",
        summary=out / "identify_summary.json",
        n_records=len(carried.customer_map),
        n_customers=int(carried.customer_map["customer_id"].nunique()),
        n_kept=carried.n_kept,
        events={k: int(v) for k, v in carried.events["event"].value_counts().sort_index().items()},
        n_review=len(queue),
        overrides=report.as_dict(),
    )
    carried.customer_map.to_parquet(result.customer_map, index=False)
    history.to_parquet(result.customer_id_history, index=False)
    queue.to_parquet(result.review_queue, index=False)
    write_plan(run, state.publication, plan_token(carried.customer_map, carried.events))
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    result.summary.write_text(json.dumps({"run_id": run.run_id, **summary}, indent=2))
    return result


def read_clusters(run: RunPaths) -> pd.DataFrame:
    """Resolved clusters, plus any staged record the resolver left out as its own singleton."""
    clusters_file = run.resolved_dir / "clusters.parquet"
    staged_file = run.staged_dir / "source_records.parquet"
    con = duckdb.connect(config=duckdb_config())
    try:
        sql = f"""
            select cast(source_record_id as varchar) as source_record_id, party_type,
                   cast(cluster_id as varchar) as cluster_id
            from read_parquet('{clusters_file.as_posix()}')
        """
        if staged_file.exists():
            sql += f"""
            union all
            select s.source_record_id, s.party_type, '~' || s.source_record_id
            from read_parquet('{staged_file.as_posix()}') s
            anti join read_parquet('{clusters_file.as_posix()}') c
                on cast(c.source_record_id as varchar) = s.source_record_id
            """
        return con.execute(sql + " order by source_record_id").df()
    finally:
        con.close()


def combine_history(previous: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The registry's events followed by this run's (not yet published) ones."""
    frames = [f[HISTORY_OUT_COLUMNS] for f in (previous, events) if not f.empty]
    if not frames:
        return empty_history()
    history = pd.concat(frames, ignore_index=True)
    history["n_records"] = history["n_records"].astype("Int64")
    history["publication"] = history["publication"].astype("Int64")
    return history.sort_values(["publication", "run_id", "event", "customer_id"],
                               kind="stable").reset_index(drop=True)


def current_customer_id(history: pd.DataFrame, customer_id: str, live_ids: set[str]) -> str | None:
    """Follow an old ID through merged events to the customer that holds it now (None if retired)."""
    merged_into = dict(
        zip(history.loc[history["event"] == "merged", "customer_id"],
            history.loc[history["event"] == "merged", "related_customer_id"], strict=True)
    )
    seen: set[str] = set()
    current = customer_id
    while current not in live_ids:
        if current in seen or current not in merged_into:
            return None
        seen.add(current)
        current = merged_into[current]
    return current
