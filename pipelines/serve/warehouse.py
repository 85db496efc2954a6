"""The published warehouse as immutable, warm versions; a new publish is picked up without a restart.

Publish swaps `ucv.duckdb` by rename, so a changed (inode, mtime, size) means a new version. A
version is loaded whole (one read-only connection, the look-up indexes, the real-time resolver, all
from the same snapshot) before it replaces the current one, and a request holds the version it
started with to its end: no request ever sees a mix of two publishes. The old version's connection
closes when its last request finishes.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

log = logging.getLogger(__name__)

# what a resolve answer shows of each candidate customer (the whole 360 row is GET /customers)
SUMMARY_COLUMNS = ("customer_id", "party_type", "full_name", "org_name", "birth_date", "city",
                   "confidence", "n_source_records", "source_systems")


@dataclass(frozen=True)
class FileIdentity:
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass
class WarehouseVersion:
    """One published warehouse, loaded: connection, profiles, indexes, resolver."""

    path: Path
    identity: FileIdentity
    con: duckdb.DuckDBPyConnection
    run_id: str
    label: str
    export_date: date | None
    profiles: pa.Table
    profile_row: dict[str, int]
    summaries: pa.Table  # profiles' SUMMARY_COLUMNS: taking 9 columns, not 70, per resolve
    links_by_customer: dict[str, list[dict]]
    contacts: dict[str, dict[str, list[dict]]]
    index: Any  # LookupIndex
    resolver: Any  # RealtimeResolver
    match_weight: dict[str, float]
    loaded_seconds: float
    _users: int = 0
    _retired: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # rows as one struct array: a take of a few rows costs ~0.6 ms, not ~1 ms over 70
        # columns one by one (every look-up answer takes its customers' rows)
        self._profile_rows = _as_struct(self.profiles)
        self._summary_rows = _as_struct(self.summaries)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread (one DuckDB connection must not be shared across threads)."""
        return self.con.cursor()

    def confidence_of(self, customer_ids: list[str]) -> dict[str, float | None]:
        """Each known customer's confidence (the look-up's tie-break), without building rows."""
        column = self.profiles.column("confidence")
        return {c: column[self.profile_row[c]].as_py() for c in customer_ids
                if c in self.profile_row}

    def profiles_of(self, customer_ids: list[str]) -> list[dict]:
        rows = [self.profile_row[c] for c in customer_ids if c in self.profile_row]
        return self._profile_rows.take(pa.array(rows, type=pa.int64())).to_pylist() if rows else []

    def summaries_of(self, customer_ids: list[str]) -> list[dict]:
        """Each known customer's SUMMARY_COLUMNS (missing columns absent), in the given order."""
        rows = [self.profile_row[c] for c in customer_ids if c in self.profile_row]
        return self._summary_rows.take(pa.array(rows, type=pa.int64())).to_pylist() if rows else []

    def enter(self) -> None:
        with self._lock:
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            close = self._retired and self._users == 0
        if close:
            self.close()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            close = self._users == 0
        if close:
            self.close()

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:  # already closed
            pass


def _as_struct(table: pa.Table) -> pa.StructArray:
    table = table.combine_chunks()
    columns = [c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in table.columns]
    return pa.StructArray.from_arrays(columns, names=table.column_names)


_LINKS = itertools.count()


def open_snapshot(path: Path) -> tuple[duckdb.DuckDBPyConnection, FileIdentity]:
    """A read-only connection to the file `path` names now, and that file's identity.

    DuckDB hands out one database instance per path within a process, so opening `ucv.duckdb`
    again while a version is open would return the old file. A hard link with a name of its own
    pins the current inode (no race with a rename either); it is removed once the file is open."""
    if not path.exists():
        raise FileNotFoundError(f"no published warehouse at {path}: run the pipeline first")
    link = path.with_name(f".{path.stem}-serve-{os.getpid()}-{next(_LINKS)}{path.suffix}")
    try:
        os.link(path, link)
    except OSError:  # cannot link here (read-only folder): open the path itself
        identity = FileIdentity.of(path)
        con = duckdb.connect(str(path), read_only=True)
        if identity is None or FileIdentity.of(path) != identity:
            con.close()
            raise RuntimeError(f"{path} changed while it was opened; will retry") from None
        return con, identity
    try:
        identity = FileIdentity.of(link)
        con = duckdb.connect(str(link), read_only=True)
    finally:
        link.unlink(missing_ok=True)
    assert identity is not None
    return con, identity


def remove_stale_links(path: Path) -> None:
    """Links left by a service that was killed while opening a version (they pin old files)."""
    for stale in path.parent.glob(f".{path.stem}-serve-*{path.suffix}"):
        pid = stale.name.split("-serve-")[1].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.unlink(missing_ok=True)


def load_version(path: Path, open_lead_days: int = 365, models: dict | None = None) -> WarehouseVersion:
    """Load everything a request needs from one snapshot of the warehouse file."""
    from pipelines.identify.realtime import RealtimeResolver
    from pipelines.resolve.config import thresholds
    from pipelines.serve.index import LookupIndex

    started = time.perf_counter()
    con, identity = open_snapshot(path)
    try:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        missing = {"source_records", "customer_360", "customer_policy_links"} - tables
        if missing:
            raise ValueError(f"{path} is not a published warehouse: missing tables {sorted(missing)}")
        run_id, label, export_date = _run_identity(con, tables)
        records = con.sql("select * from source_records where customer_id is not null").to_arrow_table()
        # one chunk: Table.take on a many-chunk table concatenates every chunk first (97 ms per
        # look-up at 1M records against 1.3 ms)
        profiles = con.sql("select * from customer_360").to_arrow_table().combine_chunks()
        profile_row = {c: i for i, c in enumerate(profiles["customer_id"].to_pylist())}
        links = con.sql("select * from customer_policy_links order by customer_id, policy_number, role").to_arrow_table()
        history = (con.sql("select customer_id, related_customer_id from customer_id_history "
                           "where event = 'merged'").to_arrow_table()
                   if "customer_id_history" in tables
                   else pa.table({"customer_id": pa.array([], pa.string()),
                                  "related_customer_id": pa.array([], pa.string())}))
        links_by_customer: dict[str, list[dict]] = {}
        for row in links.drop_columns([c for c in ("run_id",) if c in links.column_names]).to_pylist():
            links_by_customer.setdefault(row["customer_id"], []).append(row)
        contacts = _contacts(con, records, export_date, open_lead_days)
        index = LookupIndex(records, links, history, set(profile_row), confidence=dict(zip(
            profiles["customer_id"].to_pylist(), profiles["confidence"].to_pylist(), strict=True)))
        resolver = RealtimeResolver(path, models=models, records=records)
        match_weight = {p: thresholds(p).match for p in ("person", "organization")}
    except BaseException:
        con.close()
        raise
    return WarehouseVersion(
        path=path, identity=identity, con=con, run_id=run_id, label=label, export_date=export_date,
        profiles=profiles, profile_row=profile_row,
        summaries=profiles.select([c for c in SUMMARY_COLUMNS if c in profiles.column_names]),
        links_by_customer=links_by_customer,
        contacts=contacts, index=index, resolver=resolver, match_weight=match_weight,
        loaded_seconds=round(time.perf_counter() - started, 3))


def _run_identity(con: duckdb.DuckDBPyConnection, tables: set[str]) -> tuple[str, str, date | None]:
    if "runs" not in tables:
        return "unknown", "unknown", None
    rows = con.execute("select run_id, coalesce(warehouse_version, run_id), cast(export_date as date) "
                       "from runs order by publish_sequence desc nulls last, run_id desc limit 1").fetchall()
    if not rows:
        return "unknown", "unknown", None
    run_id, label, export_date = rows[0]
    return str(run_id), str(label), export_date


OPEN_LEADS_SQL = """
with active as (
    select distinct customer_id, upper(product) as product from contact_records
    where policy_status = 'active' and product is not null
)
select r.customer_id,
       list(struct_pack(source_record_id := r.source_record_id, product := r.product,
                        channel := r.interaction_channel, date := cast(r.interaction_date as date))
            order by r.interaction_date desc nulls last, r.source_record_id) as leads
from contact_records r
anti join active a on a.customer_id = r.customer_id and a.product = upper(r.product)
where r.source_system = 'sales'
  and ($as_of::date is null or r.interaction_date is null
       or cast(r.interaction_date as date) >= $as_of::date - $days::integer)
group by r.customer_id
"""

ACTIVE_POLICIES_SQL = """
with active as (
    select customer_id, policy_number, any_value(product) as product,
           list(distinct source_system order by source_system) as source_systems,
           list(distinct role order by role) as roles
    from contact_records where policy_status = 'active' and policy_number is not null
    group by customer_id, policy_number
),
channel as (  -- the channel the policy was sold through: underwriting or sales records carry it
    select customer_id, policy_number, min(interaction_channel) as channel
    from contact_records where interaction_channel is not null and policy_number is not null
    group by customer_id, policy_number
)
select a.customer_id,
       list(struct_pack(policy_number := a.policy_number, product := a.product, channel := c.channel,
                        source_systems := a.source_systems, roles := a.roles)
            order by a.policy_number) as policies
from active a left join channel c using (customer_id, policy_number)
group by a.customer_id
"""


def _contacts(con, records: pa.Table, as_of: date | None, open_lead_days: int) -> dict:
    """Per customer: open sales leads (recent, for a product not already held) and active policies."""
    columns = ["customer_id", "source_record_id", "source_system", "product", "policy_status",
               "policy_number", "role", "interaction_channel", "interaction_date"]
    present = [c for c in columns if c in records.column_names]
    mem = duckdb.connect()
    try:
        mem.register("contact_in", records.select(present))
        select = ", ".join(c if c in present else f"null::varchar as {c}" for c in columns)
        mem.execute(f"create table contact_records as select {select} from contact_in")
        leads = mem.execute(OPEN_LEADS_SQL, {"as_of": as_of, "days": int(open_lead_days)}).fetchall()
        policies = mem.execute(ACTIVE_POLICIES_SQL).fetchall()
    finally:
        mem.close()
    contacts: dict[str, dict[str, list[dict]]] = {}
    for customer_id, items in leads:
        contacts.setdefault(customer_id, {})["open_leads"] = items
    for customer_id, items in policies:
        contacts.setdefault(customer_id, {})["active_policies"] = items
    return contacts


class WarehouseHolder:
    """The current version, reloaded in the background when the published file changes."""

    def __init__(self, path: Path, open_lead_days: int = 365, poll_seconds: float = 1.0,
                 models: dict | None = None):
        self.path = Path(path)
        self.open_lead_days = open_lead_days
        self.poll_seconds = poll_seconds
        self.models = models
        self._current: WarehouseVersion | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.reloads = 0

    def start(self) -> None:
        """Load the current warehouse (if any), then watch for new publishes."""
        remove_stale_links(self.path)
        self.check()
        self._thread = threading.Thread(target=self._watch, name="warehouse-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            current, self._current = self._current, None
        if current:
            current.retire()

    def check(self) -> bool:
        """Load a new version if the file changed since the current one; True when it swapped."""
        identity = FileIdentity.of(self.path)
        current = self._current
        if identity is None or (current is not None and current.identity == identity):
            return False
        try:
            version = load_version(self.path, self.open_lead_days, self.models)
        except Exception as err:  # keep serving the version we have; say why in /health
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("could not load %s", self.path)
            return False
        self.last_error = None
        with self._lock:
            old, self._current = self._current, version
            self.reloads += 1
        if old is not None:
            old.retire()
        log.info("serving warehouse %s (run %s), loaded in %.1f s", version.label, version.run_id,
                 version.loaded_seconds)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    @contextmanager
    def acquire(self) -> Iterator[WarehouseVersion | None]:
        """The current version, kept open until the block ends (None before any publish)."""
        with self._lock:
            version = self._current
            if version is not None:
                version.enter()
        try:
            yield version
        finally:
            if version is not None:
                version.leave()
