"""Real-time resolution: "is this new lead someone we already know?", answered at once.

`RealtimeResolver` loads the nightly Splink models and a snapshot of the published warehouse once
(so a warehouse swap never breaks a query in flight; `refresh()` picks up the next one). Per query,
on a cursor of its own (a pool of cursors, each with its prepared statements):
1. standardize the record through its source's mapping (a warm `RecordStandardizer` per source,
   the SQL of ingest's nightly run, prepared once, its canonical SELECT compiled to Python;
   concurrent records share one execution: `StandardizeBatcher`), handed on as a dict;
2. build the model's input row and its blocking keys in one prepared statement (resolve's input
   SQL over the record's values), nickname variants and term frequencies from memory;
3. find stored records sharing a blocking key of the model's own blocking rules, through a key
   index (one row per stored record and rule, with an ART index, so a lookup touches a few rows);
4. compute their comparison levels with Splink's own comparison-vector SQL, prepared once, and
   the match weights from the model in Python (`resolve.realtime.CompiledScorer`: every DuckDB
   expression costs binding per query, and Splink's weight SQL repeats each term). Start-up
   checks the input rows against the nightly builder and the scores against Splink's SQL, and
   takes Splink's path (`compare_records`) if either differs; tests compare with `predict_between`;
5. keep each customer's best-scoring record and return the top customers with the evidence.
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import settings
from pipelines.batching import Batcher
from pipelines.resolve.python_levels import NearTie
from pipelines.sql import quote_ident, quote_list, quote_literal

PARTY_TYPES = ("person", "organization")
CANONICAL_SOURCE = "canonical"  # a record already in the canonical schema (other services)
_SEP = "chr(31)"  # unit separator between key parts: cannot occur in standardized values
_KEY_PREFIX = "__rt_key_"  # blocking-key columns of the input statement
_CUSTOMER = "__rt_customer_id"  # the stored record's customer, beside the model's columns
_SCORING_CHECKS = 5  # stored records scored both ways at start-up
_LEVEL_CHECKS = 200  # stored records whose pairs' levels are computed both ways at start-up
_WARM_SESSIONS = 8  # fast-path cursors prepared at start-up (more are made under more load)
_CHECK_BLANKED = ("phone_mobile", "email", "national_id", "postcode", "registration_id")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """An existing customer the record may be: its best-matching stored record and the evidence."""

    customer_id: str
    party_type: str
    match_probability: float
    match_weight: float
    source_record_id: str
    n_records_matched: int
    evidence: dict[str, float] = field(default_factory=dict)  # comparison -> match weight
    levels: dict[str, int] = field(default_factory=dict)  # comparison -> Splink gamma level

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RealtimeResolver:
    """A warm resolver: models and warehouse snapshot loaded once, then many `resolve` calls."""

    def __init__(self, warehouse: Path | None = None, models: dict | None = None,
                 max_candidates: int = 200, records=None):
        self.warehouse = Path(warehouse or settings.warehouse_file())
        self.models = models
        self.max_candidates = max_candidates
        self._lock = threading.Lock()
        self._mappings: dict | None = None
        self._batchers: dict[str, StandardizeBatcher] = {}  # per source, made on first use
        self._parties: dict[str, _PartyScorer] = {}
        self.refresh(records)

    def refresh(self, records=None) -> None:
        """Reload the published warehouse (after a nightly publish). `records` (an Arrow table of
        source_records read by the caller) lets a service build its other indexes from the very
        same snapshot."""
        if records is None:
            records = self._read_records()
        parties = {}
        for party_type in PARTY_TYPES:
            parties[party_type] = _PartyScorer(party_type, records, self.models, self.max_candidates)
        with self._lock:
            self._parties = parties

    def _read_records(self):
        if not self.warehouse.exists():
            raise FileNotFoundError(f"no published warehouse at {self.warehouse}: run the pipeline first")
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.sql("select * from source_records where customer_id is not null").to_arrow_table()
        finally:
            con.close()

    def standardize(self, record: dict[str, Any], source: str) -> pd.DataFrame:
        """The record in the canonical schema, through its source's mapping (one row)."""
        return pd.DataFrame([self.standardize_record(record, source)])

    def standardize_record(self, record: dict[str, Any], source: str) -> dict[str, Any]:
        """As `standardize`, as a dict (no DataFrame: building one costs ~8 ms a query)."""
        if source == CANONICAL_SOURCE:
            row = dict(record)
        else:
            row = self._batcher(source).standardize(record)
        if _parameter(row.get("source_record_id")) is None:
            row["source_record_id"] = f"{source}:query"
        row["source_record_id"] = f"query:{row['source_record_id']}"
        return row

    def resolve(self, record: dict[str, Any], source: str, top_k: int = 5) -> list[Candidate]:
        """Best existing customers for one record in `source`'s shape, most probable first."""
        canonical = self.standardize_record(record, source)
        return self.resolve_canonical(canonical, top_k=top_k)

    def resolve_canonical(self, canonical: pd.DataFrame | dict[str, Any], top_k: int = 5) -> list[Candidate]:
        """As `resolve`, for a record already standardized (one canonical row or dict)."""
        party_type = str(_record_values(canonical).get("party_type"))
        if party_type not in PARTY_TYPES:
            raise ValueError(f"party_type {party_type!r} is not one of {PARTY_TYPES}")
        with self._lock:
            party = self._parties[party_type]
        return party.best_customers(canonical, top_k)  # thread-safe: a cursor per thread

    def arriving(self, source: str):
        """A request about to standardize a `source` record: announced to its batcher, so that
        a batch starting meanwhile waits for it (`Batcher.arriving`)."""
        from contextlib import nullcontext

        if source == CANONICAL_SOURCE:
            return nullcontext()
        try:
            return self._batcher(source).arriving()
        except KeyError:  # an unknown source: standardize_record says so
            return nullcontext()

    def batching(self) -> dict[str, dict[str, float]]:
        """Per source standardized in real time: batches run, records, mean batch."""
        with self._lock:
            return {source: batcher.stats() for source, batcher in sorted(self._batchers.items())}

    def _batcher(self, source: str) -> StandardizeBatcher:
        """The source's batching front over warm `RecordStandardizer`s (made on first use)."""
        with self._lock:
            if self._mappings is None:
                from pipelines.ingest import load_mappings

                self._mappings = load_mappings()
            if source not in self._mappings:
                raise KeyError(f"unknown source {source!r}; known: {sorted(self._mappings)}")
            batcher = self._batchers.get(source)
            if batcher is None:
                batcher = self._batchers[source] = StandardizeBatcher(self._mappings[source])
            return batcher


class StandardizeBatcher(Batcher[dict[str, Any], dict[str, Any]]):
    """Concurrent records of one source standardized together, through ingest's mapping (the SQL
    of the nightly run: tests/test_standardize_frame.py); see `pipelines.batching`.

    One standardizer (one DuckDB connection) by default: its working statement costs ~3 ms per
    execution whatever the batch, the rest is Python per record (the compiled canonical SELECT),
    so one connection taking every waiting record beats two taking turns (1M warehouse, 8
    concurrent sales leads: p95 41 ms with one, 50-56 ms with two, 61 ms with four)."""

    def __init__(self, mapping, standardizers: int | None = None):
        from pipelines.standardize.records import RecordStandardizer

        self.mapping = mapping
        count = standardizers or 1
        self._runners_all = [RecordStandardizer(mapping) for _ in range(count)]
        super().__init__(list(self._runners_all), self._standardize, gather_seconds=0.005)

    def standardize(self, record: dict[str, Any]) -> dict[str, Any]:
        """One source-shaped record -> its canonical row (a dict)."""
        return self.submit(record)

    def stats(self) -> dict[str, float]:
        """The batches, and how many records the compiled canonical SELECT assembled (`python`)
        or DuckDB's statement did (`duckdb`, while being checked against it or declined)."""
        out = super().stats()
        for standardizer in self._runners_all:
            for way, count in standardizer.paths.items():
                out[f"rows_{way}"] = out.get(f"rows_{way}", 0) + count
        return out

    def _standardize(self, standardizer, records: list[dict[str, Any]]) -> list[Any]:
        rows = standardizer.standardize_rows(records, "realtime")
        by_record: dict[int, list[dict]] = {}
        for row in rows:
            by_record.setdefault(int(row["source_row_number"]) - 1, []).append(row)
        return [by_record[i][0] if len(by_record.get(i, [])) == 1 else ValueError(
                    f"the {self.mapping.name} record did not standardize to one canonical row")
                for i in range(len(records))]


_DEFAULT_RESOLVERS: dict[tuple[str, int], RealtimeResolver] = {}
_DEFAULT_LOCK = threading.Lock()


def resolve_record(record: dict[str, Any], source: str, warehouse: Path | None = None,
                   top_k: int = 5) -> list[Candidate]:
    """Is this record a customer we know? Keeps one warm resolver per warehouse file."""
    path = Path(warehouse or settings.warehouse_file()).resolve()
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0)
    with _DEFAULT_LOCK:
        resolver = _DEFAULT_RESOLVERS.get(key)
        if resolver is None:
            _DEFAULT_RESOLVERS.clear()  # the warehouse was swapped: drop the old snapshot
            resolver = _DEFAULT_RESOLVERS[key] = RealtimeResolver(path)
    return resolver.resolve(record, source, top_k=top_k)


class _PartyScorer:
    """Stored records of one party type, their blocking-key index and the compiled scoring SQL."""

    def __init__(self, party_type: str, records, models: dict | None, max_candidates: int):
        import pyarrow.compute as pc

        from pipelines.resolve import load_linker
        from pipelines.resolve.realtime import compile_scorer

        self.party_type = party_type
        self.max_candidates = max_candidates
        stored = records.filter(pc.equal(records["party_type"], party_type))
        self.n_stored = stored.num_rows
        self.linker = load_linker(party_type, stored, models=models)
        self.db_api = self.linker.db_api
        self.con = self.db_api.duckdb_con
        self.settings = self.linker.model  # as nightly: prior rescaled to the stored records
        self.cache_key = f"ucv_realtime_{party_type}_{id(self)}"
        self._lock = threading.Lock()  # the Splink path shares one connection
        self._sessions: queue.SimpleQueue[_Session] = queue.SimpleQueue()  # the fast path's cursors
        self.con.register("stored_customers", stored.select(["source_record_id", "customer_id"]))
        self.con.execute(f"create or replace table customer_of_{party_type} as "
                         f"select source_record_id as unique_id, customer_id from stored_customers")
        self.con.execute(f"create index customer_of_{party_type}_id on customer_of_{party_type} (unique_id)")
        self.con.unregister("stored_customers")
        self.tf_tables = self._tf_tables()
        self.tf_values = {c: dict(self.con.execute(f"select {c}, tf_{c} from {t}").fetchall())
                          for c, t in self.tf_tables.items()}
        self.con.execute(f"create or replace table scoring_{party_type} as "
                         f"select s.*, c.customer_id as {_CUSTOMER} from ({self._with_tf(f'stored_{party_type}')}) s "
                         f"left join customer_of_{party_type} c using (unique_id) order by unique_id")
        self.con.execute(f"create index scoring_{party_type}_id on scoring_{party_type} (unique_id)")
        self.rules = self._blocking_rules()
        from pipelines.resolve.features import COLUMN_TYPES, COLUMNS

        self.input_columns = ["source_record_id", *COLUMNS[party_type]]
        self.input_types = ["VARCHAR[]" if COLUMN_TYPES.get(c, "").endswith("[]") else "VARCHAR"
                            for c in self.input_columns]
        self.input_in_python: Any = None  # python_levels.RowFn once compiled and checked
        self._build_key_index()
        self.new_keys_sql = " union all ".join(
            f"select {_key_expr(i, [r for _, r in rule['equi']])} as key from rt_new_{party_type} "
            f"where {_not_null([r for _, r in rule['equi']])}"
            for i, rule in enumerate(self.rules) if rule["equi"])
        self.join_condition = " OR ".join(f"({r['sql']})" for r in self.rules) or "1=1"
        # A candidate shares a key of some rule; when every rule is equi-joins only, sharing the
        # key is meeting the rule, and the scoring statement need not test the rules again.
        self.fast_join_condition = ("1=1" if all(r["pure"] for r in self.rules)
                                    else self.join_condition)
        # Queries touch a few rows: one thread avoids scheduling work across threads per statement.
        self.con.execute("set threads = 1")
        self.scorer = compile_scorer(self.settings)
        from pipelines.resolve.python_levels import compile_levels

        self.levels, why = compile_levels(self.scorer.comparison_columns)
        if self.levels is None:
            log.info("%s comparison levels stay in DuckDB: %s", party_type, why)
        self._build_memory_index()
        self._check_sample = stored.slice(0, min(20, self.n_stored)).to_pandas()
        self.fast_input = self.fast_scoring = False
        if self.n_stored > 0 and all(rule["equi"] for rule in self.rules):
            self._stage_new_record(self._check_sample.iloc[[0]])
            self.row_columns = [(r[0], r[1]) for r in self.con.execute(f"describe rt_new_{party_type}").fetchall()]
            self.fast_input = self._split_keys() and self._check_fast_input()
            if self.fast_input:
                self._compile_input()
                if self.input_in_python is not None and not self._check_python_input(stored):
                    self.input_in_python = None
            self.fast_scoring = self.fast_input and self._check_fast_scoring()
            if self.fast_scoring and self.levels is not None and not self._check_python_levels(stored):
                self.levels = None
        if self.fast_input and self.fast_scoring:  # cursors for concurrent requests, made now
            for _ in range(_WARM_SESSIONS - self._sessions.qsize()):
                self._sessions.put(_Session(self))

    def best_customers(self, canonical: pd.DataFrame | dict[str, Any], top_k: int) -> list[Candidate]:
        if self.n_stored == 0:
            return []
        if self.fast_input and self.fast_scoring:
            return self._best_fast(_record_values(canonical), top_k)
        frame = canonical if isinstance(canonical, pd.DataFrame) else pd.DataFrame([canonical])
        with self._lock:
            return self._best_with_splink(frame, top_k)

    # The fast path: per thread, a cursor with its own candidate table and prepared statements:
    # (1) the model input row and its blocking keys, from the record's values as parameters;
    # (2) stored records sharing a key (ART index); (3) their comparison levels against the new
    # row (Splink's SQL, prepared once); (4) match weights in Python (CompiledScorer.weigh).

    def _best_fast(self, values: dict[str, Any], top_k: int) -> list[Candidate]:
        return self._best_per_customer(self.pairs(values), top_k)

    def pairs(self, canonical: pd.DataFrame | dict[str, Any]) -> list[dict]:
        """Every scored pair (stored `_l`, new `_r`) of one canonical record, by the fast path:
        gamma_*, mw_*, mw_tf_adj_*, match_weight, match_probability and customer_id."""
        if not (self.fast_input and self.fast_scoring):
            raise RuntimeError(f"the fast path is off for {self.party_type} (see the start-up log)")
        with self._session() as session:
            row, keys = self._input_row(session, _record_values(canonical))
            positions = self._candidate_positions(session.cursor, keys)
            return self._pairs_fast(session, row, positions) if len(positions) else []

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        """A cursor of this request's own (a DuckDB connection serves one thread at a time),
        from a pool that grows to the number of concurrent requests."""
        try:
            session = self._sessions.get_nowait()
        except queue.Empty:
            session = _Session(self)
        try:
            yield session
        finally:
            self._sessions.put(session)

    def _input_query(self, source: str) -> str:
        """The model input row and its blocking keys (`__rt_key_<rule>` columns) of `source`'s rows."""
        from pipelines.resolve.features import comparison_input_sql

        keys = "".join(
            f", case when {_not_null(exprs)} then {_key_expr(i, exprs)} end as {_KEY_PREFIX}{i}"
            for i, exprs in self.sql_keys)
        return (f"select *{keys} from "
                f"({comparison_input_sql(source, set(self.input_columns), self.party_type)})")

    def _compile_input(self) -> None:
        """The input statement as Python (python_levels.compile_row_query): ~5 ms of DuckDB
        binding per query otherwise. Start-up compares it with the statement on stored records."""
        from pipelines.resolve.python_levels import compile_row_query

        self.input_in_python, why = compile_row_query(self._input_query("rt_canonical_in"), "rt_canonical_in")
        if self.input_in_python is None:
            log.info("%s model input row stays in DuckDB: %s", self.party_type, why)

    def _input_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The record's values as the input statement's VARCHAR / VARCHAR[] parameters see them."""
        return {c: _as_text(_parameter(values.get(c), c == "birth_date"), t)
                for c, t in zip(self.input_columns, self.input_types, strict=True)}

    def _input_row(self, session: _Session, values: dict[str, Any],
                   engine: str = "any") -> tuple[dict[str, Any], list[str]]:
        """The model input row of a record (as the nightly builder makes it) and its blocking keys;
        `engine` "duckdb" or "python" forces one way (start-up checks)."""
        found = None
        if self.input_in_python is not None and engine != "duckdb":
            try:
                found = self.input_in_python(self._input_values(values))
            except Exception:  # a value only DuckDB's parser can read (a date spelt otherwise...)
                if engine == "python":
                    raise
                log.debug("python input row failed: DuckDB's statement", exc_info=True)
        if found is None:
            cursor = session.cursor
            cursor.execute(f"EXECUTE {session.input_statement}(" + ", ".join(
                _typed_literal(_parameter(values.get(c), c == "birth_date"), t)
                for c, t in zip(self.input_columns, self.input_types, strict=True)) + ")")
            names = [d[0] for d in cursor.description]
            found = dict(zip(names, cursor.fetchall()[0], strict=True))
        keys = [found.pop(k) for k in [n for n in found if n.startswith(_KEY_PREFIX)]]
        from pipelines.resolve.features import sounds_and_keys_of_one_record

        # what the nightly builder derives through Python look-ups, as it does (start-up checks)
        if self.party_type == "person":
            name, given = found["given_name_first"], found["given_name_norm"]
            found["given_name_variants"] = None if name is None else self._nickname_variants(name)
            forms = _cantonese_forms(given) if given is not None else None
            found["given_name_pinyin_forms"] = forms or None
        found = sounds_and_keys_of_one_record(self.party_type, found)
        for column, frequencies in self.tf_values.items():
            value = frequencies.get(found[column])
            found[f"tf_{column}"] = None if value is None else float(value)
        for i, columns in self.row_keys:  # keys on derived columns: plain columns, text
            key_values = [found[c] for c in columns]
            keys.append(None if any(v is None for v in key_values) else chr(31).join([str(i), *key_values]))
        return found, [k for k in keys if k is not None]

    def _split_keys(self) -> bool:
        """Which rules' keys the input statement computes (over resolve's input SQL) and which
        are read off the finished row (rules on columns derived in Python: plain text columns).
        False when a rule is neither: the Splink path then."""
        import sqlglot
        from sqlglot import exp

        from pipelines.resolve.features import CAPPED_KEYS

        derived = {"given_name_variants", "given_name_pinyin_forms", "name_sound", "org_name_sound",
                   *(k for keys in CAPPED_KEYS.values() for k in keys),
                   *(f"tf_{c}" for c in self.tf_values)}
        types = dict(self.row_columns)
        self.sql_keys: list[tuple[int, list[str]]] = []
        self.row_keys: list[tuple[int, list[str]]] = []
        for i, rule in enumerate(self.rules):
            exprs = [right for _, right in rule["equi"]]
            parsed = [sqlglot.parse_one(e, dialect="duckdb") for e in exprs]
            if not {c.name for p in parsed for c in p.find_all(exp.Column)} & derived:
                self.sql_keys.append((i, exprs))
            elif all(isinstance(p, exp.Column) and types.get(p.name) == "VARCHAR" for p in parsed):
                self.row_keys.append((i, [p.name for p in parsed]))
            else:
                log.warning("blocking rule %s reads a derived column through an expression: Splink path",
                            rule["sql"])
                return False
        return True

    def _build_memory_index(self) -> None:
        """The stored rows and the blocking-key index in memory (Arrow and numpy): a query reads
        ~20 rows, and every DuckDB statement costs binding however few rows it touches.
        Keys are held as 64 bits of their MD5 (DuckDB's md5_number_lower, which `_key_hash`
        computes in Python: no statement per query), sorted, beside the row they belong to: a
        hash shared by two keys (odds ~1e-12 per query at 10M keys) only adds a candidate, which
        the model then scores like any other."""
        party = self.party_type
        # one chunk per column: `take` on a many-chunk table concatenates every chunk per call
        # (50 ms a query at 1M rows instead of 0.1 ms)
        self.rows = self.con.sql(f"select * from scoring_{party} order by unique_id").to_arrow_table().combine_chunks()
        index = self.con.execute(
            f"select md5_number_lower(b.key) as h, s.position from block_keys_{party} b join "
            f"(select unique_id, (row_number() over (order by unique_id) - 1)::integer as position "
            f"from scoring_{party}) s using (unique_id) order by h, s.position").fetchnumpy()
        self.key_hashes = np.asarray(index["h"], dtype=np.uint64)
        self.key_positions = np.asarray(index["position"], dtype=np.int64)

    def _candidate_positions(self, cursor, keys: list[str]) -> np.ndarray:
        """Rows (positions in `self.rows`) sharing a blocking key with the record, those sharing
        most keys first, then by unique_id (as `_candidate_ids` ranks them), at most
        `max_candidates`."""
        if not keys:
            return np.empty(0, dtype=np.int64)
        wanted = np.array([_key_hash(k) for k in set(keys)], dtype=np.uint64)
        starts = np.searchsorted(self.key_hashes, wanted, side="left")
        ends = np.searchsorted(self.key_hashes, wanted, side="right")
        found = [self.key_positions[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True) if b > a]
        if not found:
            return np.empty(0, dtype=np.int64)
        positions, counts = np.unique(np.concatenate(found), return_counts=True)
        order = np.lexsort((positions, -counts))[: self.max_candidates]
        return positions[order]

    def _candidate_ids_of(self, positions: np.ndarray) -> list[str]:
        return self.rows.column("unique_id").take(pa.array(positions)).to_pylist()

    def _pairs_fast(self, session: _Session, row: dict[str, Any], positions: np.ndarray) -> list[dict]:
        if self.levels is not None:
            try:
                return self._pairs_in_python(row, positions)
            except NearTie:  # a similarity at a threshold: DuckDB's own figure decides
                pass
            except Exception:  # a value the compiled levels cannot take: DuckDB's statement decides
                log.warning("python comparison levels failed on a %s query; DuckDB's SQL instead",
                            self.party_type, exc_info=True)
        return self._pairs_in_duckdb(session, row, self._candidate_ids_of(positions))

    def _pairs_in_python(self, row: dict[str, Any], positions: np.ndarray) -> list[dict]:
        """As `_pairs_in_duckdb`, with the levels from the compiled closures (same SQL)."""
        assert self.levels is not None
        tf_columns = [(name, name[:-2], name.endswith("_l"))
                      for name in (n.strip('"') for n in self.scorer.tf_columns)]
        unique_id = row["unique_id"]
        pairs = []
        for stored in self.rows.take(pa.array(positions)).to_pylist():
            pair: dict[str, Any] = {"unique_id_l": stored["unique_id"]}
            pair.update(self.levels.levels(stored, row))
            for name, column, left in tf_columns:
                pair[name] = stored.get(column) if left else row.get(column)
            pair["unique_id_r"] = unique_id
            pair["customer_id"] = stored[_CUSTOMER]
            pairs.append(self.scorer.weigh(pair))
        return pairs

    def _pairs_in_duckdb(self, session: _Session, row: dict[str, Any], candidate_ids: list[str]) -> list[dict]:
        cursor = session.cursor
        cursor.execute("delete from rt_cand")
        # A literal IN list is answered from the ART index (a join or a parameter list scans the table).
        cursor.execute(f"insert into rt_cand select * from scoring_{self.party_type} "
                       f"where unique_id in ({_literals(candidate_ids)})")
        cursor.execute(f"EXECUTE {session.gamma_statement}(" + ", ".join(
            _typed_literal(row.get(name), type_) for name, type_ in session.row_columns) + ")")
        names = [d[0] for d in cursor.description]
        pairs = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        unique_id = row["unique_id"]
        for pair in pairs:
            pair["unique_id_r"] = unique_id
            pair["customer_id"] = pair.pop(f"{_CUSTOMER}_l")
            self.scorer.weigh(pair)
        return pairs

    def _check_fast_input(self) -> bool:
        """Stage a few stored records both ways; use the parameter path only if rows agree."""
        party = self.party_type
        for i in range(len(self._check_sample)):
            row = self._check_sample.iloc[[i]]
            self._stage_new_record(row)
            cursor = self.con.execute(f"select * from rt_new_{party}")
            nightly = dict(zip([d[0] for d in cursor.description], cursor.fetchall()[0], strict=True))
            with self._session() as session:
                fast, _ = self._input_row(session, _record_values(row))
            if fast != nightly:
                log.warning("real-time input row differs from the nightly builder's (%s): Splink path",
                            sorted(k for k in nightly if fast.get(k, object()) != nightly[k]))
                return False
        return True

    def _check_fast_scoring(self) -> bool:
        """Score a few stored records (one field blanked) both ways; the fast path only if the
        pairs, levels, weights and probabilities equal Splink's."""
        for i in range(min(_SCORING_CHECKS, len(self._check_sample))):
            record = self._check_sample.iloc[i].to_dict()
            record["source_record_id"] = f"check:{i}"
            record[_CHECK_BLANKED[i % len(_CHECK_BLANKED)]] = None
            frame = pd.DataFrame([record])
            with self._lock:
                self._stage_new_record(frame)
                candidate_ids = self._candidate_ids()
                expected = self._splink_pairs(candidate_ids) if candidate_ids else []
            with self._session() as session:
                row, keys = self._input_row(session, _record_values(frame))
                positions = self._candidate_positions(session.cursor, keys)
                fast_ids = self._candidate_ids_of(positions)
                got = self._pairs_fast(session, row, positions) if fast_ids else []
            if fast_ids != candidate_ids or not _same_pairs(expected, got, self.scorer):
                log.warning("real-time fast scoring differs from Splink's on a stored record: Splink path")
                return False
        return True

    def _check_python_input(self, stored) -> bool:
        """The compiled input row against the statement on stored records spread over the table,
        with fields blanked in turn: the Python row only if every row and key is the same."""
        sample = _spread_sample(stored)
        with self._session() as session:
            for i, record in enumerate(sample):
                record[_CHECK_BLANKED[i % len(_CHECK_BLANKED)]] = None
                expected = self._input_row(session, record, engine="duckdb")
                try:
                    got = self._input_row(session, record, engine="python")
                except Exception:
                    continue  # that record goes to DuckDB at query time as well
                if got != expected:
                    log.warning("python input row differs from DuckDB's (%s): DuckDB's statement",
                                sorted(k for k in expected[0] if got[0].get(k, object()) != expected[0][k]))
                    return False
        return True

    def _check_python_levels(self, stored) -> bool:
        """Stored records spread over the table (one field blanked each) against their candidates:
        the compiled levels only if they give DuckDB's levels and weights on every pair."""
        sample = _spread_sample(stored)
        checked = 0
        with self._session() as session:
            for i, record in enumerate(sample):
                record["source_record_id"] = f"check:{i}"
                record[_CHECK_BLANKED[i % len(_CHECK_BLANKED)]] = None
                row, keys = self._input_row(session, record)
                positions = self._candidate_positions(session.cursor, keys)
                if not len(positions):
                    continue
                try:
                    mine = self._pairs_in_python(row, positions)
                except NearTie:
                    continue
                except Exception:
                    log.warning("python comparison levels failed at start-up: DuckDB's SQL", exc_info=True)
                    return False
                theirs = self._pairs_in_duckdb(session, row, self._candidate_ids_of(positions))
                if not _same_pairs(theirs, mine, self.scorer):
                    log.warning("python comparison levels differ from DuckDB's on a stored record: DuckDB's SQL")
                    return False
                checked += len(mine)
        log.info("%s: python comparison levels equal DuckDB's on %d pairs", self.party_type, checked)
        return True

    # The Splink path (a fallback when a check above fails): Splink's whole SQL per query.

    def _best_with_splink(self, canonical: pd.DataFrame, top_k: int) -> list[Candidate]:
        self._stage_new_record(canonical)
        candidate_ids = self._candidate_ids()
        if not candidate_ids:
            return []
        pairs = self._splink_pairs(candidate_ids)
        customer_of = dict(self.con.execute(
            f"select unique_id, customer_id from customer_of_{self.party_type} "
            f"where unique_id in ({_literals(sorted({p['unique_id_l'] for p in pairs}))})").fetchall()) if pairs else {}
        for pair in pairs:
            pair["customer_id"] = customer_of.get(pair["unique_id_l"])
        return self._best_per_customer(pairs, top_k)

    def _stage_new_record(self, canonical: pd.DataFrame) -> None:
        """The new record as a model input row with term frequencies, in table rt_new_<party>,
        through the resolve stage's own builder (several statements)."""
        from pipelines.resolve.features import create_comparison_table

        party = self.party_type
        self.con.register("rt_canonical_in", canonical)
        try:
            typed = ("(select * replace (try_cast(birth_date as date) as birth_date) from rt_canonical_in)"
                     if "birth_date" in canonical.columns else "rt_canonical_in")
            self.con.execute(f"create or replace temp table rt_canonical_{party} as select * from {typed}")
        finally:
            self.con.unregister("rt_canonical_in")
        create_comparison_table(self.con, f"rt_canonical_{party}", party, f"rt_input_{party}")
        input_sql = f"select * from rt_input_{party}"
        # Term frequencies from in-memory dicts: joining the tf tables would scan them per query.
        values = self.con.execute(f"select {', '.join(self.tf_values) or '1'} from ({input_sql})").fetchall()[0]
        tf_columns = "".join(
            f", cast({_literal_or_null(self.tf_values[c].get(v))} as double) as tf_{c}"
            for c, v in zip(self.tf_values, values, strict=False))
        self.con.execute(f"create or replace table rt_new_{party} as select *{tf_columns} from ({input_sql})")

    def _nickname_variants(self, name: str) -> list[str]:
        from pipelines.resolve.features import nickname_variants

        return nickname_variants([name])[name]

    def _splink_pairs(self, candidate_ids: list[str]) -> list[dict]:
        """Scored pairs of the candidates and rt_new_<party> by Splink's real-time SQL."""
        from splink.internals.realtime import compare_records

        party = self.party_type
        # A literal IN list is answered from the ART index (a join or a parameter list scans the table).
        self.con.execute(f"create or replace table rt_candidates_{party} as select * from scoring_{party} "
                         f"where unique_id in ({_literals(candidate_ids)})")
        result = compare_records(f"rt_candidates_{party}", f"rt_new_{party}", self.settings, self.db_api,
                                 sql_cache_key=self.cache_key, join_condition=self.join_condition)
        try:
            cursor = self.con.execute(f"select * from {result.physical_name}")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        finally:
            result.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)

    def _best_per_customer(self, pairs: list[dict], top_k: int) -> list[Candidate]:
        """Each customer's best pair (highest weight, then smallest record id), best customers first."""
        pairs.sort(key=lambda p: (-p["match_weight"], p["unique_id_l"]))
        matched: dict[str, int] = {}
        rows = []
        for pair in pairs:
            customer = pair["customer_id"]
            if customer is None:
                continue
            if customer not in matched:
                rows.append(pair)
            matched[customer] = matched.get(customer, 0) + 1
        rows = [{**row, "n_records_matched": matched[row["customer_id"]]} for row in rows[:top_k]]
        return [_candidate(row, self.party_type) for row in rows]

    def _candidate_ids(self) -> list[str]:
        """Stored records sharing a blocking key with rt_new_<party>; those sharing most keys first."""
        party = self.party_type
        hits: dict[str, int] = {}
        if self.new_keys_sql:
            keys = [k for (k,) in self.con.execute(self.new_keys_sql).fetchall()]
            if keys:
                rows = self.con.execute(
                    f"select unique_id, count(*) from block_keys_{party} "
                    f"where key in ({_literals(keys)}) group by unique_id").fetchall()
                hits.update(dict(rows))
        for rule in self.rules:
            if not rule["equi"]:  # no equi-join to index: evaluate the rule itself
                for (uid,) in self.con.execute(
                        f"select l.unique_id from stored_{party} l, rt_new_{party} r where {rule['sql']}").fetchall():
                    hits[uid] = hits.get(uid, 0) + 1
        return self._ranked(hits)

    def _ranked(self, hits: dict[str, int]) -> list[str]:
        ranked = sorted(hits, key=lambda uid: (-hits[uid], uid))
        return ranked[: self.max_candidates]

    def _build_key_index(self) -> None:
        party = self.party_type
        selects = []
        for i, rule in enumerate(self.rules):
            if rule["equi"]:
                stored_side = [left for left, _ in rule["equi"]]
                selects.append(f"select {_key_expr(i, stored_side)} as key, unique_id "
                               f"from stored_{party} where {_not_null(stored_side)}")
        if not selects:
            selects = ["select ''::varchar as key, ''::varchar as unique_id where false"]
        self.con.execute(f"create or replace table block_keys_{party} as "
                         f"{' union all '.join(selects)} order by key")
        self.con.execute(f"create index block_keys_{party}_key on block_keys_{party} (key)")

    def _blocking_rules(self) -> list[dict]:
        rules = []
        for rule in self.linker.linker._settings_obj._blocking_rules_to_generate_predictions:
            try:
                equi = rule._equi_join_conditions
            except Exception:  # a rule sqlglot cannot split: evaluated whole, unindexed
                equi = []
            try:
                pure = bool(equi) and not rule._filter_conditions
            except Exception:
                pure = False
            rules.append({"sql": rule.blocking_rule_sql, "equi": equi, "pure": pure})
        return rules

    def _tf_tables(self) -> dict[str, str]:
        """Term-frequency tables the linker computed over the stored records: column -> table."""
        tables = {}
        for (name,) in self.con.execute(
            "select table_name from information_schema.tables where table_name like '__splink__df_tf_%'"
        ).fetchall():
            column = [r[0] for r in self.con.execute(f"describe {name}").fetchall()][0]
            tables[column] = name
        return tables

    def _with_tf(self, table: str) -> str:
        if not self.tf_tables:
            return f"select * from {table}"
        columns = ", ".join(f"t{i}.tf_{c}" for i, c in enumerate(self.tf_tables))
        joins = " ".join(f"left join {t} t{i} on t{i}.{c} = s.{c}"
                         for i, (c, t) in enumerate(self.tf_tables.items()))
        return f"select s.*, {columns} from {table} s {joins}"


class _Session:
    """One thread's cursor on a party's database, with its candidate table and prepared statements
    (DuckDB connections are not thread-safe; cursors of one database are)."""

    def __init__(self, scorer: _PartyScorer):
        party = scorer.party_type
        self.cursor = scorer.con.cursor()
        self.cursor.execute(f"create temp table rt_cand as select * from scoring_{party} limit 0")
        # Every canonical column the model input reads, as parameters: one statement for any record.
        source = ("(select " + ", ".join(f"${i}::{t} as {quote_ident(c)}" for i, (c, t) in enumerate(
            zip(scorer.input_columns, scorer.input_types, strict=True), start=1)) + ") rt_canonical_in")
        self.input_statement = "rt_input"
        self.cursor.execute(f"prepare {self.input_statement} as {scorer._input_query(source)}")
        self.row_columns = scorer.row_columns
        right = ("(select " + ", ".join(f"${i}::{type_} as {quote_ident(name)}"
                                        for i, (name, type_) in enumerate(self.row_columns, start=1)) + ")")
        self.gamma_statement = "rt_gamma"
        self.cursor.execute(f"prepare {self.gamma_statement} as "
                            f"{scorer.scorer.gamma_sql('rt_cand', right, scorer.fast_join_condition, keep=(_CUSTOMER,))}")


def _record_values(canonical: pd.DataFrame | dict[str, Any]) -> dict[str, Any]:
    """The one canonical record as a dict of column -> value."""
    if isinstance(canonical, pd.DataFrame):
        if len(canonical) != 1:
            raise ValueError(f"expected one canonical record, got {len(canonical)}")
        return canonical.to_dict("records")[0]
    return canonical


def _parameter(value: Any, date_column: bool = False) -> Any:
    """A canonical value as a statement parameter: missing -> None, numpy -> Python, a date or
    timestamp of the birth date column -> its ISO date (what try_cast(... as date) reads)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_parameter(v) for v in value]
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if date_column and isinstance(value, datetime):
        return value.date().isoformat()
    if date_column and isinstance(value, date):
        return value.isoformat()
    return value


def _spread_sample(stored) -> list[dict]:
    """Up to _LEVEL_CHECKS stored records spread evenly over the table (the start-up checks)."""
    step = max(1, stored.num_rows // _LEVEL_CHECKS)
    return stored.take(pa.array(range(0, stored.num_rows, step))[:_LEVEL_CHECKS]).to_pylist()


def _as_text(value: Any, sql_type: str) -> Any:
    """What the input statement's parameter holds for `value`: the text of `_typed_literal`."""
    if value is None:
        return None
    if sql_type.endswith("[]"):
        return [_as_text(v, sql_type[:-2]) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _key_hash(key: str) -> int:
    """DuckDB's md5_number_lower(key): the second half of the MD5 digest, little-endian."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()[8:], "little")


def _typed_literal(value: Any, sql_type: str) -> str:
    """`value` as a SQL literal of exactly the prepared parameter's type (another type makes
    DuckDB re-plan the statement); a float through its repr, which DuckDB reads back exactly."""
    if value is None:
        return f"NULL::{sql_type}"
    if sql_type.endswith("[]"):
        return "[" + ", ".join(_typed_literal(v, sql_type[:-2]) for v in value) + f"]::{sql_type}"
    if isinstance(value, float) or isinstance(value, (date, datetime)):
        text = repr(value) if isinstance(value, float) else value.isoformat()
        return f"{quote_literal(text)}::{sql_type}"
    if isinstance(value, bool):
        return f"{'TRUE' if value else 'FALSE'}::{sql_type}"
    if isinstance(value, int):
        return f"{value}::{sql_type}"
    return f"{quote_literal(str(value))}::{sql_type}"


def _same_pairs(expected: list[dict], got: list[dict], scorer) -> bool:
    """Splink's pairs and the fast path's: same pairs and levels, weights within 1e-9."""
    if sorted(p["unique_id_l"] for p in expected) != sorted(p["unique_id_l"] for p in got):
        return False
    by_id = {p["unique_id_l"]: p for p in got}
    for pair in expected:
        mine = by_id[pair["unique_id_l"]]
        if any(pair[g] != mine[g] for g in scorer.gamma_columns):
            return False
        weights = ["match_weight", *(c.mw for c in scorer.comparisons),
                   *(c.mw_tf_adj for c in scorer.comparisons if c.tf is not None)]
        if any(abs(pair[w] - mine[w]) > 1e-9 for w in weights):
            return False
        if abs(pair["match_probability"] - mine["match_probability"]) > 1e-12:
            return False
    return True


def _cantonese_forms(given: str) -> list[str] | None:
    from pipelines.resolve.features import cantonese_pinyin_forms

    return cantonese_pinyin_forms([given]).get(given)


def _literal_or_null(value: Any) -> str:
    return "null" if value is None else repr(float(value))


def _literals(values: list[str]) -> str:
    return quote_list(values)


def _key_expr(rule_index: int, expressions: list[str]) -> str:
    parts = ", ".join(f"cast({e} as varchar)" for e in expressions)
    return f"concat_ws({_SEP}, '{rule_index}', {parts})"


def _not_null(expressions: list[str]) -> str:
    return " and ".join(f"({e}) is not null" for e in expressions)


def _candidate(row: dict[str, Any], party_type: str) -> Candidate:
    comparisons = [c[len("gamma_"):] for c in row if c.startswith("gamma_")]
    evidence = {}
    for name in comparisons:
        weight = _comparison_weight(row, name)
        if weight is not None:
            evidence[name] = round(weight, 3)
    return Candidate(
        customer_id=str(row["customer_id"]),
        party_type=party_type,
        match_probability=float(row["match_probability"]),
        match_weight=float(row["match_weight"]),
        source_record_id=str(row["unique_id_l"]),
        n_records_matched=int(row["n_records_matched"]),
        evidence=evidence,
        levels={name: int(row[f"gamma_{name}"]) for name in comparisons},
    )


def _comparison_weight(row: dict, name: str) -> float | None:
    """Match weight of one comparison incl. its term-frequency adjustment (Splink's mw_ columns)."""
    if f"mw_{name}" in row:
        weight = row[f"mw_{name}"]
        adjust = row.get(f"mw_tf_adj_{name}")
    elif f"bf_{name}" in row:
        weight = math.log2(row[f"bf_{name}"]) if row[f"bf_{name}"] else None
        tf = row.get(f"bf_tf_adj_{name}")
        adjust = math.log2(tf) if tf else None
    else:
        return None
    if weight is None or (isinstance(weight, float) and math.isnan(weight)):
        return None
    if adjust is None or (isinstance(adjust, float) and math.isnan(adjust)):
        adjust = 0.0
    return float(weight) + float(adjust)
