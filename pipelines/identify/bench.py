"""Latency of real-time resolution in a warm process: p50/p95 per query against a warehouse.

Queries are stored records drawn with a seed, resubmitted under a new id with one field blanked
(so they are near-duplicates, as a new lead of a known customer is), through the canonical path.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np

from pipelines.identify.realtime import RealtimeResolver

# One of these is blanked per query, in turn, so each query differs from its stored twin.
_BLANKED = ("email", "phone_mobile", "national_id", "street", "registration_id")


def bench_realtime(warehouse: Path, n_queries: int = 1000, seed: int = 0, models: dict | None = None,
                   warmup: int = 20) -> dict:
    """Load once, then time `n_queries` resolutions; returns latencies (ms) and the hit rate."""
    started = time.perf_counter()
    resolver = RealtimeResolver(Path(warehouse), models=models)
    load_seconds = time.perf_counter() - started
    queries = _sample_queries(Path(warehouse), n_queries + warmup, seed)
    latencies, hits = [], 0
    for i, record in enumerate(queries):
        truth = record.pop("customer_id")
        record[_BLANKED[i % len(_BLANKED)]] = None
        record["source_record_id"] = f"bench:{i}"
        t0 = time.perf_counter()
        candidates = resolver.resolve(record, "canonical", top_k=5)
        elapsed = time.perf_counter() - t0
        if i < warmup:
            continue
        latencies.append(elapsed * 1000)
        hits += bool(candidates) and candidates[0].customer_id == truth
    ms = np.array(latencies)
    n_stored = sum(p.n_stored for p in resolver._parties.values())
    return {
        "warehouse_records": int(n_stored),
        "queries": len(latencies),
        "load_seconds": round(load_seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "mean_ms": round(float(ms.mean()), 1),
        "top1_is_own_customer": round(hits / len(latencies), 4),
    }


def _sample_queries(warehouse: Path, n: int, seed: int) -> list[dict]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        total = con.execute("select count(*) from source_records where customer_id is not null").fetchall()[0][0]
        rng = np.random.default_rng(seed)
        picks = sorted(set(rng.choice(total, size=min(n, total), replace=n > total).tolist()))
        cursor = con.execute(
            "select * from (select *, row_number() over (order by source_record_id) - 1 as rn "
            "from source_records where customer_id is not null) "
            "where rn in (select unnest(?::bigint[]))", [picks])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    finally:
        con.close()
    for row in rows:
        row.pop("rn")
    order = np.random.default_rng(seed + 1).permutation(len(rows))
    return [dict(rows[i]) for i in order][:n]
