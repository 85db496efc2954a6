"""golden_accuracy: how often the golden name, birth date and mobile phone equal the true values.

Each customer is matched to the true entity most of its source records come from (ground truth
from the generator; ties to the smallest entity id), then its golden values are compared with
that entity's attributes. Names are compared after the pipeline's folding (case, accents, hanzi as
pinyin, spaces), so 'Müller' and 'MUELLER' agree but 'Tom' and 'Thomas' do not. Beside each share,
`reachable_*` says how many customers have the true value in at least one of their records: no
survivorship rule can do better than that; `*_where_reachable` is the share right among those
customers, i.e. how well the rules pick when the truth is there to pick.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from pipelines import settings
from pipelines.golden.build import sql_path
from pipelines.golden.lookup import name_key
from pipelines.settings import RunPaths

FIELDS = ("name", "birth_date", "phone_mobile")


def golden_tables(warehouse_or_run: RunPaths | Path) -> tuple[str, str]:
    """SQL sources of (customers, source_records) in a run folder or a published warehouse."""
    if isinstance(warehouse_or_run, RunPaths):
        folder = warehouse_or_run.golden_dir
        return (f"read_parquet({sql_path(folder / 'customers.parquet')})",
                f"read_parquet({sql_path(folder / 'source_records.parquet')})")
    return "wh.customers", "wh.source_records"  # the warehouse, attached as `wh`


def name_keys(given: pd.Series, family: pd.Series) -> pd.Series:
    """name_key(given) + '|' + name_key(family), computed once per distinct pair."""
    pairs = pd.DataFrame({"g": given.fillna(""), "f": family.fillna("")})
    distinct = pairs.drop_duplicates().copy()
    distinct["key"] = [name_key(g) + "|" + name_key(f)
                       for g, f in zip(distinct["g"], distinct["f"], strict=True)]
    return pairs.merge(distinct, on=["g", "f"], how="left")["key"].set_axis(given.index)


def as_text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


def golden_accuracy(warehouse_or_run: RunPaths | Path, truth_dir: Path) -> dict:
    """Share of person customers whose golden name, birth date and mobile phone equal the truth."""
    customers, records = golden_tables(warehouse_or_run)
    truth_dir = Path(truth_dir)
    with duckdb.connect() as con:
        if not isinstance(warehouse_or_run, RunPaths):
            path = Path(warehouse_or_run)
            path = path / settings.warehouse_file().name if path.is_dir() else path
            con.execute(f"ATTACH {sql_path(path)} AS wh (READ_ONLY)")
        con.execute(f"""
            CREATE TEMP TABLE customer_entity AS
            WITH votes AS (
                SELECT r.customer_id, CAST(t.entity_id AS VARCHAR) AS entity_id, count(*) AS n
                FROM {records} r
                JOIN read_parquet({sql_path(truth_dir / 'ground_truth.parquet')}) t
                     USING (source_record_id)
                GROUP BY ALL
            )
            SELECT customer_id, entity_id FROM votes
            QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY n DESC, entity_id) = 1
        """)
        con.execute(f"""
            CREATE TEMP TABLE truth AS
            SELECT ce.customer_id, e.given_name, e.family_name,
                   CAST(e.birth_date AS DATE) AS birth_date, e.phone_mobile
            FROM customer_entity ce
            JOIN read_parquet({sql_path(truth_dir / 'entities.parquet')}) e
                 ON CAST(e.entity_id AS VARCHAR) = ce.entity_id
        """)
        golden = con.execute(f"""
            SELECT c.customer_id, c.given_name, c.family_name, c.birth_date, c.phone_mobile
            FROM {customers} c JOIN truth USING (customer_id)
            WHERE c.party_type = 'person' ORDER BY c.customer_id
        """).df().set_index("customer_id")
        truth = con.execute("SELECT * FROM truth").df().set_index("customer_id").loc[golden.index]
        seen = con.execute(f"""
            SELECT r.customer_id, r.given_name, r.family_name, r.birth_date, r.phone_mobile
            FROM {records} r SEMI JOIN truth USING (customer_id) WHERE r.party_type = 'person'
        """).df()
    if golden.empty:
        return {"customers": 0}
    correct = {
        "name": name_keys(golden["given_name"], golden["family_name"])
                == name_keys(truth["given_name"], truth["family_name"]),
        "birth_date": as_text(golden["birth_date"]) == as_text(truth["birth_date"]),
        "phone_mobile": as_text(golden["phone_mobile"]) == as_text(truth["phone_mobile"]),
    }
    seen_truth = truth.loc[seen["customer_id"]].reset_index()
    seen_ok = pd.DataFrame({
        "customer_id": seen["customer_id"],
        "name": (name_keys(seen["given_name"], seen["family_name"])
                 == name_keys(seen_truth["given_name"], seen_truth["family_name"])).to_numpy(),
        "birth_date": (as_text(seen["birth_date"]) == as_text(seen_truth["birth_date"])).to_numpy(),
        "phone_mobile": (as_text(seen["phone_mobile"])
                         == as_text(seen_truth["phone_mobile"])).to_numpy(),
    }).groupby("customer_id").any().reindex(golden.index, fill_value=False)
    # a true value that is missing is reached by a golden value that is missing
    for field in ("birth_date", "phone_mobile"):
        seen_ok[field] |= as_text(truth[field]).eq("").to_numpy()
    result: dict = {"customers": len(golden)}
    for field in FIELDS:
        result[field] = round(float(correct[field].mean()), 4)
    all_three = correct["name"] & correct["birth_date"] & correct["phone_mobile"]
    result["all_three"] = round(float(all_three.mean()), 4)
    for field in FIELDS:
        result[f"reachable_{field}"] = round(float(seen_ok[field].mean()), 4)
    reachable = seen_ok["name"] & seen_ok["birth_date"] & seen_ok["phone_mobile"]
    result["reachable_all_three"] = round(float(reachable.mean()), 4)
    # what the survivorship rules themselves got right: only where the truth was there to pick
    for field in FIELDS:
        result[f"{field}_where_reachable"] = share(correct[field][seen_ok[field].to_numpy()])
    result["all_three_where_reachable"] = share(all_three[reachable])
    return result


def share(flags: pd.Series) -> float | None:
    return round(float(flags.mean()), 4) if len(flags) else None
