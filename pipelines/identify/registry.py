"""The ID registry: every customer ID ever published, to which source records, and every ID event.

It lives beside the warehouse (`data/registry/ids.duckdb`), outside any run folder, and is only
ever appended to (erasure replaces the erased record keys by salted hashes, nothing else). It is
the baseline customer IDs are carried forward from, so whatever date is rerun, in whatever order,
an ID once published keeps naming the same customer, and sequence numbers are never handed out
twice. Tables:

- `publications` — one row per commit: `publication` (1, 2, ...), `run_id`, `kind` (run, erasure,
  bootstrap), `live` (did it replace the live warehouse), `based_on`, `plan_token`;
- `issued` — one row per ID: `customer_id`, `sequence`, `publication` that issued it, `party_type`;
- `assignments` — record -> ID per publication: for live publications the changes against the live
  state before it (`customer_id` NULL = the record left); for a historic rebuild (an older date
  rerun without replacing the live warehouse) all its rows;
- `events` — `publication` + the customer_id_history columns.

The live state (the baseline of the next run) is each record's latest assignment in a live
publication. Identify writes `identified/registry_plan.json` (the publication it was based on and a
token of its customer map); publish commits that plan under the publish lock, once: a retry of a
publish that already committed is recognised by its token, and a plan based on a registry that has
moved on since (another run published, an erasure) is refused, so IDs are never decided on stale
state.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from pipelines import settings
from pipelines.identify.stable_ids import HISTORY_COLUMNS, ID_PREFIX
from pipelines.settings import RunPaths

REGISTRY_DIR = "registry"
REGISTRY_FILE = "ids.duckdb"
PLAN_FILE = "registry_plan.json"
HISTORY_OUT_COLUMNS = [*HISTORY_COLUMNS, "publication"]
ISSUING_EVENTS = ("new", "split")

_SCHEMA = """
create table if not exists publications (
    publication integer, run_id varchar, kind varchar, live boolean, based_on integer,
    plan_token varchar);
create table if not exists issued (
    customer_id varchar, sequence bigint, publication integer, party_type varchar);
create table if not exists assignments (
    publication integer, source_record_id varchar, customer_id varchar, party_type varchar);
create table if not exists events (
    publication integer, run_id varchar, event varchar, customer_id varchar,
    related_customer_id varchar, party_type varchar, n_records bigint);
"""

LIVE_MAP_SQL = """
select source_record_id, customer_id, party_type from (
    select a.*, row_number() over (partition by a.source_record_id
                                   order by a.publication desc) as rank
    from assignments a join publications p using (publication)
    where p.live
) where rank = 1 and customer_id is not null
"""


class RegistryMoved(RuntimeError):
    """The registry changed after the run's identify stage; identify must run again."""


def registry_file(warehouse_dir: Path | None = None) -> Path:
    """`data/registry/ids.duckdb`: beside the warehouse folder, outside every run folder."""
    return Path(warehouse_dir or settings.warehouse_dir()).parent / REGISTRY_DIR / REGISTRY_FILE


@contextmanager
def registry_lock(path: Path) -> Iterator[None]:
    """One reader or writer at a time: DuckDB lets only one process open a file for writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def open_registry(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The registry under its lock, created on first use."""
    with registry_lock(path), duckdb.connect(str(path)) as con:
        con.execute(_SCHEMA)
        yield con


@dataclass(frozen=True)
class RegistryState:
    """What identify carries IDs forward from."""

    publication: int  # the last publication (0: none yet)
    live_map: pd.DataFrame  # source_record_id, customer_id, party_type
    history: pd.DataFrame  # HISTORY_OUT_COLUMNS
    highest_sequence: int  # highest sequence ever issued
    live_run_id: str | None  # the run whose publication is live


def empty_state() -> RegistryState:
    return RegistryState(
        publication=0,
        live_map=pd.DataFrame({c: pd.Series(dtype="object")
                               for c in ("source_record_id", "customer_id", "party_type")}),
        history=empty_history(), highest_sequence=0, live_run_id=None)


def empty_history() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in HISTORY_OUT_COLUMNS})
    frame["n_records"] = frame["n_records"].astype("Int64")
    frame["publication"] = frame["publication"].astype("Int64")
    return frame


def read_state(path: Path | None) -> RegistryState:
    """The registry's live state; an empty state when there is no registry."""
    if path is None or not Path(path).exists():
        return empty_state()
    with open_registry(Path(path)) as con:
        publication = con.execute("select coalesce(max(publication), 0) from publications"
                                  ).fetchall()[0][0]
        live_map = con.execute(LIVE_MAP_SQL + " order by source_record_id").df()
        history = con.execute(
            f"select {', '.join(HISTORY_OUT_COLUMNS)} from events "
            "order by publication, event, customer_id, related_customer_id").df()
        highest = con.execute("select coalesce(max(sequence), 0) from issued").fetchall()[0][0]
        live_run = con.execute(
            "select run_id from publications where live and kind = 'run' "
            "order by publication desc limit 1").fetchall()
    if history.empty:
        history = empty_history()
    history["n_records"] = history["n_records"].astype("Int64")
    history["publication"] = history["publication"].astype("Int64")
    return RegistryState(publication=int(publication), live_map=live_map, history=history,
                         highest_sequence=int(highest), live_run_id=live_run[0][0] if live_run else None)


def sequence_of(customer_id: str) -> int | None:
    digits = customer_id[len(ID_PREFIX):]
    return int(digits) if customer_id.startswith(ID_PREFIX) and digits.isdigit() else None


def plan_token(customer_map: pd.DataFrame, events: pd.DataFrame) -> str:
    """A digest of what a run decided (its record -> ID map and its events), order-independent.

    The SHA-256 of each frame's rows, fields joined by \\x1f (NULL as ''), sorted, each followed by
    \\x1e, frames followed by \\x1d. Sorted in DuckDB: byte order of UTF-8 is code-point order,
    so this is the digest the earlier Python sort gave (a million rows took it 2 s)."""
    digest = hashlib.sha256()
    with duckdb.connect(config=settings.duckdb_config()) as con:
        for name, frame, columns in (("m", customer_map, ["source_record_id", "customer_id"]),
                                     ("e", events, ["event", "customer_id", "related_customer_id"])):
            con.register(name, frame[columns])
            row = " || chr(31) || ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in columns)
            text = con.execute(f"SELECT string_agg(r || chr(30), '' ORDER BY r) FROM "
                               f"(SELECT {row} AS r FROM {name})").fetchall()[0][0]
            digest.update((text or "").encode("utf-8"))
            digest.update(b"\x1d")
    return digest.hexdigest()


def write_plan(run: RunPaths, based_on: int, token: str) -> Path:
    path = run.identified_dir / PLAN_FILE
    path.write_text(json.dumps({"run_id": run.run_id, "based_on": based_on, "token": token},
                               indent=2) + "\n", encoding="utf-8")
    return path


def read_plan(run: RunPaths) -> dict:
    path = run.identified_dir / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run the identify stage for {run.run_id} first")
    return json.loads(path.read_text(encoding="utf-8"))


def replaces_live(path: Path, run_id: str, replace_live: bool = False) -> bool:
    """Whether publishing `run_id` replaces the live warehouse: not when a later night is live."""
    if replace_live:
        return True
    live_run = read_state(path).live_run_id if Path(path).exists() else None
    return live_run is None or run_id >= live_run


def commit_run(path: Path, run: RunPaths, *, live: bool) -> int | None:
    """Record the run's identify plan as a publication; returns its number (None: nothing new).

    A historic rebuild (live=False) records every assignment and only the IDs it issued (new,
    split): its merges and retirements describe a state that never went live.
    """
    plan = read_plan(run)
    customer_map = pd.read_parquet(run.identified_dir / "customer_map.parquet")
    history = pd.read_parquet(run.identified_dir / "customer_id_history.parquet")
    based_on = int(plan["based_on"])
    events = history[history["publication"] == based_on + 1] if "publication" in history \
        else history.iloc[0:0]
    with open_registry(Path(path)) as con:
        later = con.execute("select run_id, plan_token, live from publications "
                            "where publication > ? order by publication", [based_on]).fetchall()
        if later:
            if all(r[0] == run.run_id and r[1] == plan["token"] and r[2] == live for r in later):
                return None  # this plan was committed by an earlier attempt of this publish
            raise RegistryMoved(
                f"the ID registry moved on since identify ran for {run.run_id} (publication "
                f"{based_on + len(later)} by {later[-1][0]}); rerun the date from identify")
        if not live:
            events = events[events["event"].isin(ISSUING_EVENTS)]
        publication = based_on + 1
        con.register("cur_map", customer_map[["source_record_id", "customer_id", "party_type"]])
        con.register("new_events", events[HISTORY_COLUMNS].astype(
            {"customer_id": "object", "related_customer_id": "object"}))
        con.execute(f"create temp table live_now as {LIVE_MAP_SQL}")
        if events.empty and _unchanged_rerun(con, based_on, run.run_id, live):
            return None  # a rerun that changed nothing: no empty publication
        con.execute("begin transaction")
        try:
            _insert_publication(con, publication, run, plan, live)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return publication


def _unchanged_rerun(con: duckdb.DuckDBPyConnection, based_on: int, run_id: str,
                     live: bool) -> bool:
    last = con.execute("select run_id, live from publications where publication = ?",
                       [based_on]).fetchall()
    if not last or last[0] != (run_id, live) or not live:
        return False
    changed = con.execute("""
        select (select count(*) from (select source_record_id, customer_id from cur_map
                                      except select source_record_id, customer_id from live_now))
             + (select count(*) from (select source_record_id, customer_id from live_now
                                      except select source_record_id, customer_id from cur_map))
    """).fetchall()[0][0]
    return changed == 0


def _insert_publication(con: duckdb.DuckDBPyConnection, publication: int, run: RunPaths,
                        plan: dict, live: bool) -> None:
    con.execute("insert into publications values (?, ?, 'run', ?, ?, ?)",
                [publication, run.run_id, live, int(plan["based_on"]), plan["token"]])
    if live:
        con.execute("""
            insert into assignments
            select ?, c.source_record_id, c.customer_id, c.party_type
            from cur_map c left join live_now l using (source_record_id)
            where l.customer_id is distinct from c.customer_id
            union all
            select ?, l.source_record_id, null, l.party_type
            from live_now l anti join cur_map c using (source_record_id)
        """, [publication, publication])
    else:
        con.execute("insert into assignments select ?, source_record_id, customer_id, party_type "
                    "from cur_map", [publication])
    # An ID split from two earlier customers has one 'split' event per parent (its lineage);
    # it is issued once.
    con.execute("""
        insert into issued
        select e.customer_id, cast(substr(e.customer_id, ?) as bigint), ?,
               any_value(e.party_type order by e.related_customer_id)
        from new_events e
        where e.event in ('new', 'split')
          and e.customer_id not in (select customer_id from issued)
        group by e.customer_id
    """, [len(ID_PREFIX) + 1, publication])
    con.execute("""
        insert into events
        select ?, run_id, event, customer_id, related_customer_id, party_type, n_records
        from new_events
    """, [publication])


def bootstrap_from_warehouse(path: Path, warehouse: Path) -> bool:
    """Seed an absent registry from a warehouse published before the registry existed."""
    if Path(path).exists() or not Path(warehouse).exists():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as src:
        tables = {r[0] for r in src.execute(
            "select table_name from information_schema.tables").fetchall()}
        if "source_records" not in tables:
            return False
        records = src.execute("select cast(source_record_id as varchar) as source_record_id, "
                              "customer_id, party_type from source_records "
                              "where customer_id is not null").df()
        history = src.execute("select * from customer_id_history").df() \
            if "customer_id_history" in tables else empty_history()
        runs = src.execute("select max(run_id) from runs").fetchall()[0][0] \
            if "runs" in tables else None
    for column in HISTORY_COLUMNS:
        if column not in history:
            history[column] = None
    ids = pd.concat([history["customer_id"], history["related_customer_id"],
                     records["customer_id"]]).dropna().astype(str).drop_duplicates()
    issued = pd.DataFrame({"customer_id": ids, "sequence": ids.map(sequence_of)}).dropna()
    with open_registry(Path(path)) as con:
        con.register("records_in", records)
        con.register("history_in", history[HISTORY_COLUMNS].astype("object"))
        con.register("issued_in", issued)
        con.execute("insert into publications values (1, ?, 'bootstrap', true, 0, null)",
                    [runs or "bootstrap"])
        con.execute("insert into assignments select 1, source_record_id, customer_id, party_type "
                    "from records_in")
        con.execute("insert into issued select customer_id, cast(sequence as bigint), 1, null "
                    "from issued_in")
        con.execute("insert into events select 1, run_id, event, customer_id, "
                    "related_customer_id, party_type, cast(n_records as bigint) from history_in")
    return True


def publication_members(path: Path) -> pd.DataFrame:
    """(publication, live, source_record_id, customer_id): who each ID named at each publication."""
    with open_registry(Path(path)) as con:
        return con.execute("""
            with pubs as (select publication, live from publications)
            select p.publication, p.live, a.source_record_id, a.customer_id
            from pubs p join assignments a using (publication)
            where not p.live and a.customer_id is not null
            union all
            select p.publication, true, a.source_record_id, a.customer_id from pubs p
            join (select a.*, q.publication as at_pub,
                         row_number() over (partition by q.publication, a.source_record_id
                                            order by a.publication desc) as rank
                  from assignments a join pubs l on l.publication = a.publication and l.live
                  join pubs q on q.live and a.publication <= q.publication) a
              on a.at_pub = p.publication and a.rank = 1
            where a.customer_id is not null
            order by 1, 3
        """).df()
