"""Latency of real-time resolution in a warm process: p50/p95 per query against a warehouse.

Queries are stored records drawn with a seed, resubmitted under a new id with one field blanked
(so they are near-duplicates, as a new lead of a known customer is), through the canonical path
or, with `source="sales"` / `"servicing"`, written in that source's export shape so each query
also goes through the source's mapping (real-time standardization).
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
                   warmup: int = 20, source: str = "canonical") -> dict:
    """Load once, then time `n_queries` resolutions; returns latencies (ms) and the hit rate.

    `source` is "canonical" or a source whose export shape the queries are sent in (SOURCE_SHAPES).
    """
    if source != "canonical" and source not in SOURCE_SHAPES:
        raise ValueError(f"source must be 'canonical' or one of {sorted(SOURCE_SHAPES)}")
    started = time.perf_counter()
    resolver = RealtimeResolver(Path(warehouse), models=models)
    load_seconds = time.perf_counter() - started
    queries = _sample_queries(Path(warehouse), n_queries + warmup, seed)
    latencies, standardize_ms, hits = [], [], 0
    for i, record in enumerate(queries):
        truth = record.pop("customer_id")
        record[_BLANKED[i % len(_BLANKED)]] = None
        record["source_record_id"] = f"bench:{i}"
        if source != "canonical":
            record = SOURCE_SHAPES[source](record, i)
        t0 = time.perf_counter()
        # as the service does: a dict, not a one-row DataFrame (resolve() = standardize + resolve_canonical)
        canonical = resolver.standardize_record(record, source)
        t1 = time.perf_counter()
        candidates = resolver.resolve_canonical(canonical, top_k=5)
        elapsed = time.perf_counter() - t0
        if i < warmup:
            continue
        latencies.append(elapsed * 1000)
        standardize_ms.append((t1 - t0) * 1000)
        hits += bool(candidates) and candidates[0].customer_id == truth
    ms = np.array(latencies)
    n_stored = sum(p.n_stored for p in resolver._parties.values())
    return {
        "warehouse_records": int(n_stored),
        "query_shape": source,
        "queries": len(latencies),
        "load_seconds": round(load_seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "mean_ms": round(float(ms.mean()), 1),
        "top1_is_own_customer": round(hits / len(latencies), 4),
        "standardize_p50_ms": round(float(np.percentile(standardize_ms, 50)), 1),
        "standardize_p95_ms": round(float(np.percentile(standardize_ms, 95)), 1),
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


def _street_line(row: dict) -> str | None:
    return " ".join(p for p in (row["street"], row["house_number"]) if p) or None


def as_sales_lead(row: dict, i: int) -> dict:
    """A canonical record written as the CRM's sales lead export row (all text, as in the CSV)."""
    birth = row.get("birth_date")
    return {
        "lead_id": f"BENCH{i:08d}", "created_at": "2026-03-14 09:00:00", "channel": "web",
        "lead_type": "person" if row["party_type"] == "person" else "company",
        "first_name": row.get("given_name"), "last_name": row.get("family_name"),
        "company_name": row.get("org_name"), "email": row.get("email"),
        "mobile": row.get("phone_mobile"), "phone": row.get("phone_landline"),
        "street_address": _street_line(row), "zip": row.get("postcode"), "city": row.get("city"),
        "country": row.get("country"),
        "birth_date": birth.strftime("%d.%m.%Y") if birth is not None else None,
    }


def as_servicing_party(row: dict, i: int) -> dict:
    """A canonical record written as a policy servicing JSON line (nested address, phone list)."""
    person = row["party_type"] == "person"
    birth = row.get("birth_date")
    return {
        "record_id": f"SV-BENCH-{i:08d}", "role": "PH", "party_kind": "natural" if person else "legal",
        "name": row.get("full_name") if person else row.get("org_name"),
        "birth_date": birth.isoformat() if birth is not None else None,
        "gender": {"M": "male", "F": "female"}.get(row.get("sex") or ""),
        "id_number": row.get("national_id") if person else row.get("registration_id"),
        "phone_numbers": [p for p in (row.get("phone_mobile"), row.get("phone_landline")) if p],
        "email_address": row.get("email"),
        "address": {"street": _street_line(row), "postcode": row.get("postcode"),
                    "city": row.get("city"), "country": row.get("country")},
    }


SOURCE_SHAPES = {"sales": as_sales_lead, "servicing": as_servicing_party}
