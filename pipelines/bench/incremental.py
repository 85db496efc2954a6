"""`ucv bench-incremental`: a full night against an incremental night on the same data.

Night 1 is generated and run as a full night in a data root of its own; the root is copied, and
night 2 (the same population a day later, `--night 2`, with `new_records` / `mobile_changed`
set so about 1 % of the records are new and 0.5 % changed) runs once `--full` in one copy and
once `--incremental` in the other, each `ucv run` in a process of its own. Reported: per-stage
seconds of both, and how far the incremental night's results are from the full night's —
pairwise cluster agreement, staged records and customer IDs that differ, match weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipelines.bench.agreement import cluster_agreement
from pipelines.sql import quote_path

NIGHT_1 = date(2026, 11, 22)
# later-night changes as shares of customers (schemas/generator.yaml `kinds`): ~2.5 records per
# customer, so 0.025 new leads per customer is ~1 % new records and 0.015 new mobiles ~0.5 %
# changed servicing records
CHANGES = {"new_records": 0.025, "mobile_changed": 0.015}
# golden customer columns computed from match probabilities
CONFIDENCE = ("confidence", "weakest_link_probability", "nearest_other_customer_probability")


def compare_runs(full_run: Path, incr_run: Path) -> dict[str, Any]:
    """How the incremental night's outputs differ from the full night's (same exports)."""
    import duckdb

    def differ(relative: str, key: str | None = None) -> dict[str, int]:
        x, y = quote_path(full_run / relative), quote_path(incr_run / relative)
        cols = f"* EXCLUDE ({key})" if key else "*"
        q = (f"SELECT count(*) FROM (SELECT {cols} FROM read_parquet({{0}}) "
             f"EXCEPT ALL SELECT {cols} FROM read_parquet({{1}}))")
        return {"rows_full": con.execute(f"SELECT count(*) FROM read_parquet({x})").fetchall()[0][0],
                "only_full": con.execute(q.format(x, y)).fetchall()[0][0],
                "only_incremental": con.execute(q.format(y, x)).fetchall()[0][0]}

    def confidence_difference() -> float:
        x = quote_path(full_run / "golden" / "customers.parquet")
        y = quote_path(incr_run / "golden" / "customers.parquet")
        worst = ", ".join(f"coalesce(max(abs(f.{c} - i.{c})), 0)" for c in CONFIDENCE)
        return round(float(con.execute(f"""SELECT greatest({worst}) FROM read_parquet({x}) f
            JOIN read_parquet({y}) i USING (customer_id)""").fetchall()[0][0]), 6)

    with duckdb.connect() as con:
        pairs_full = quote_path(full_run / "resolved" / "match_pairs.parquet")
        pairs_incr = quote_path(incr_run / "resolved" / "match_pairs.parquet")
        weights = con.execute(f"""
            SELECT count(*), max(abs(f.match_weight - i.match_weight)),
                   avg(abs(f.match_weight - i.match_weight)),
                   count(*) FILTER (WHERE f.is_link <> i.is_link)
            FROM read_parquet({pairs_full}) f JOIN read_parquet({pairs_incr}) i
            USING (source_record_id_l, source_record_id_r)""").fetchall()[0]
        only = con.execute(f"""SELECT
            (SELECT count(*) FROM read_parquet({pairs_full}) f ANTI JOIN read_parquet({pairs_incr})
             i USING (source_record_id_l, source_record_id_r)),
            (SELECT count(*) FROM read_parquet({pairs_incr}) i ANTI JOIN read_parquet({pairs_full})
             f USING (source_record_id_l, source_record_id_r))""").fetchall()[0]
        return {
            "clusters": cluster_agreement(con, full_run / "resolved" / "clusters.parquet",
                                          incr_run / "resolved" / "clusters.parquet",
                                          labels=("full", "incremental")),
            "staged_records": differ("staged/source_records.parquet"),
            "customer_map": differ("identified/customer_map.parquet"),
            # customers carry tonight's run_id on both nights; their confidence columns come from
            # match probabilities, which differ within the resolve tolerance (kept pairs keep the
            # base night's weights), so they are compared by size of difference, the rest exactly
            "golden_customers": differ("golden/customers.parquet", key=", ".join(CONFIDENCE)),
            "golden_confidence_max_difference": confidence_difference(),
            "golden_policy_links": differ("golden/customer_policy_links.parquet"),
            "match_pairs": {"in_both": int(weights[0]), "only_full": int(only[0]),
                            "only_incremental": int(only[1]),
                            "max_weight_difference": round(float(weights[1] or 0), 4),
                            "mean_weight_difference": round(float(weights[2] or 0), 5),
                            "link_status_differs": int(weights[3])}}


def _run(home: Path, day: date, mode: str, log: Path) -> dict[str, Any]:
    """`ucv run --date day --<mode>` in its own process on data root `home`; its run state."""
    env = {**os.environ, "UCV_HOME": str(home)}
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--date", day.isoformat(),
                        f"--{mode}"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return json.loads((home / "runs" / day.isoformat() / "run_state.json").read_text())


def stage_seconds(state: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage, the per-source extract/validate tasks summed into one each."""
    out: dict[str, float] = {}
    for name, s in state.get("stages", {}).items():
        key = name.split(".")[0]
        out[key] = round(out.get(key, 0.0) + float(s.get("seconds") or 0), 3)
    out["total"] = round(sum(out.values()), 3)
    return out


def bench_incremental(records: int, seed: int, work: Path) -> dict[str, Any]:
    """Generate nights 1 and 2, run night 1 full, night 2 full and incremental; the figures."""
    from pipelines.generate import generate_exports, records_to_customers
    from pipelines.generate.config import load_config

    base = load_config()
    config = dataclasses.replace(base, kinds=dataclasses.replace(base.kinds, **CHANGES))
    customers = records_to_customers(records, config)
    night_2 = NIGHT_1 + timedelta(days=1)
    gens = {}
    for night in (1, 2):
        out = work / f"gen-{records}-seed{seed}-night{night}"
        if not (out / "truth" / "generation_summary.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            generate_exports(out, customers=customers, seed=seed, export_date=NIGHT_1,
                             config=config, night=night)
        gens[night] = out
    full_home, incr_home = work / f"incr-{records}-full", work / f"incr-{records}-incremental"
    for home in (full_home, incr_home):
        shutil.rmtree(home, ignore_errors=True)
    for night, day in ((1, NIGHT_1), (2, night_2)):
        landing = full_home / "landing" / day.isoformat()
        landing.mkdir(parents=True)
        for f in sorted((gens[night] / "landing").iterdir()):
            os.link(f, landing / f.name)
    _run(full_home, NIGHT_1, "full", work / f"incr-{records}-night1.log")
    shutil.copytree(full_home, incr_home, symlinks=True)
    full = _run(full_home, night_2, "full", work / f"incr-{records}-night2-full.log")
    incr = _run(incr_home, night_2, "incremental", work / f"incr-{records}-night2-incr.log")
    summary = json.loads((incr_home / "runs" / night_2.isoformat() / "report"
                          / "incremental.json").read_text())
    seconds_full, seconds_incr = stage_seconds(full), stage_seconds(incr)
    return {
        "records_requested": records, "seed": seed, "changes": CHANGES,
        "source_records": full["stages"]["standardize"]["counts"].get("source_records"),
        "reuse": summary,
        "seconds": {"full": seconds_full, "incremental": seconds_incr},
        "incremental_over_full": {k: round(seconds_incr[k] / v, 3) for k, v in seconds_full.items()
                                  if v and k in seconds_incr},
        "comparison": compare_runs(full_home / "runs" / night_2.isoformat(),
                                   incr_home / "runs" / night_2.isoformat()),
        "load_average": os.getloadavg(),
    }
