"""Real-time resolution: "is this new lead someone we already know?", answered at once.

`RealtimeResolver` loads the nightly Splink models and a snapshot of the published warehouse once
(so a warehouse swap never breaks a query in flight; `refresh()` picks up the next one). Per query:
1. standardize the record through its source's mapping (a warm `RecordStandardizer` per source,
   the SQL of ingest's nightly run, prepared once) and build the model's input row (resolve's
   input SQL);
2. find stored records sharing a blocking key of the model's own blocking rules, through a key
   index (one row per stored record and rule, with an ART index, so a lookup touches a few rows);
3. score those pairs with the trained model through Splink's real-time pairwise scoring
   (`splink.internals.realtime.compare_records`, its SQL compiled once per party type and cached),
   the model's blocking rules as join condition, term frequencies of the stored records. Splink's
   `predict_between` gives the same scores (tests compare them) but rebuilds its SQL pipeline on
   every call, about 140 ms before any data is touched;
4. keep each customer's best-scoring record and return the top customers with the evidence.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipelines import settings
from pipelines.sql import quote_list, quote_literal

PARTY_TYPES = ("person", "organization")
CANONICAL_SOURCE = "canonical"  # a record already in the canonical schema (other services)
_SEP = "chr(31)"  # unit separator between key parts: cannot occur in standardized values


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
        self._standardizers: dict[str, Any] = {}  # source -> RecordStandardizer, made on first use
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
        if source == CANONICAL_SOURCE:
            frame = pd.DataFrame([record])
        else:
            frame = _standardize_with_mapping(record, source, self._standardizer(source))
        if "source_record_id" not in frame or frame["source_record_id"].isna().all():
            frame["source_record_id"] = f"{source}:query"
        frame["source_record_id"] = "query:" + frame["source_record_id"].astype(str)
        return frame

    def resolve(self, record: dict[str, Any], source: str, top_k: int = 5) -> list[Candidate]:
        """Best existing customers for one record in `source`'s shape, most probable first."""
        canonical = self.standardize(record, source)
        return self.resolve_canonical(canonical, top_k=top_k)

    def resolve_canonical(self, canonical: pd.DataFrame, top_k: int = 5) -> list[Candidate]:
        """As `resolve`, for a record already standardized (one canonical row)."""
        party_type = str(canonical["party_type"].iloc[0])
        if party_type not in PARTY_TYPES:
            raise ValueError(f"party_type {party_type!r} is not one of {PARTY_TYPES}")
        with self._lock:
            return self._parties[party_type].best_customers(canonical, top_k)

    def _standardizer(self, source: str):
        """The source's warm `RecordStandardizer` (prepared SQL on an open connection)."""
        if self._mappings is None:
            from pipelines.ingest import load_mappings

            self._mappings = load_mappings()
        if source not in self._mappings:
            raise KeyError(f"unknown source {source!r}; known: {sorted(self._mappings)}")
        if source not in self._standardizers:
            from pipelines.standardize.records import RecordStandardizer

            self._standardizers[source] = RecordStandardizer(self._mappings[source])
        return self._standardizers[source]


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


def _standardize_with_mapping(record: dict[str, Any], source: str, standardizer) -> pd.DataFrame:
    """One raw record (values as the source writes them) -> canonical row, via ingest's mapping
    (the same SQL as the nightly run: tests/test_standardize_frame.py)."""
    raw = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in record.items()})
    frame = standardizer.standardize(raw, "realtime")
    if len(frame) != 1:
        raise ValueError(f"the {source} record did not standardize to one canonical row")
    return frame


class _PartyScorer:
    """Stored records of one party type, their blocking-key index and the compiled scoring SQL."""

    def __init__(self, party_type: str, records, models: dict | None, max_candidates: int):
        import pyarrow.compute as pc

        from pipelines.resolve import load_linker

        self.party_type = party_type
        self.max_candidates = max_candidates
        stored = records.filter(pc.equal(records["party_type"], party_type))
        self.n_stored = stored.num_rows
        self.linker = load_linker(party_type, stored, models=models)
        self.db_api = self.linker.db_api
        self.con = self.db_api.duckdb_con
        self.settings = self.linker.model  # as nightly: prior rescaled to the stored records
        self.cache_key = f"ucv_realtime_{party_type}_{id(self)}"
        self.con.register("stored_customers", stored.select(["source_record_id", "customer_id"]))
        self.con.execute(f"create or replace table customer_of_{party_type} as "
                         f"select source_record_id as unique_id, customer_id from stored_customers")
        self.con.execute(f"create index customer_of_{party_type}_id on customer_of_{party_type} (unique_id)")
        self.con.unregister("stored_customers")
        self.tf_tables = self._tf_tables()
        self.tf_values = {c: dict(self.con.execute(f"select {c}, tf_{c} from {t}").fetchall())
                          for c, t in self.tf_tables.items()}
        self.con.execute(f"create or replace table scoring_{party_type} as "
                         f"{self._with_tf(f'stored_{party_type}')} order by unique_id")
        self.con.execute(f"create index scoring_{party_type}_id on scoring_{party_type} (unique_id)")
        self._check_sample = stored.slice(0, min(20, self.n_stored)).to_pandas()
        self.fast_input = False
        self.fast_input = self.n_stored > 0 and self._check_fast_input()
        self.rules = self._blocking_rules()
        self._build_key_index()
        self.new_keys_sql = " union all ".join(
            f"select {_key_expr(i, [r for _, r in rule['equi']])} as key from rt_new_{party_type} "
            f"where {_not_null([r for _, r in rule['equi']])}"
            for i, rule in enumerate(self.rules) if rule["equi"])
        self.join_condition = " OR ".join(f"({r['sql']})" for r in self.rules) or "1=1"
        # Queries touch a few rows: one thread avoids scheduling work across threads per statement.
        self.con.execute("set threads = 1")

    def best_customers(self, canonical: pd.DataFrame, top_k: int) -> list[Candidate]:
        party = self.party_type
        if self.n_stored == 0:
            return []
        self._stage_new_record(canonical)
        candidate_ids = self._candidate_ids()
        if not candidate_ids:
            return []
        # A literal IN list is answered from the ART index (a join or a parameter list scans the table).
        self.con.execute(f"create or replace table rt_candidates_{party} as select * from scoring_{party} "
                         f"where unique_id in ({_literals(candidate_ids)})")
        return self._score(top_k)

    def _stage_new_record(self, canonical: pd.DataFrame) -> None:
        """The new record as a model input row with term frequencies, in table rt_new_<party>."""
        party = self.party_type
        self.con.register("rt_canonical_in", canonical)
        try:
            typed = ("(select * replace (try_cast(birth_date as date) as birth_date) from rt_canonical_in)"
                     if "birth_date" in canonical.columns else "rt_canonical_in")
            if self.fast_input:
                input_sql = self._input_sql_fast(typed, set(canonical.columns))
            else:
                self._input_row_as_nightly(typed)
                input_sql = f"select * from rt_input_{party}"
        finally:
            if not self.fast_input:
                self.con.unregister("rt_canonical_in")
        try:
            # Term frequencies from in-memory dicts: joining the tf tables would scan them per query.
            values = self.con.execute(
                f"select {', '.join(self.tf_values) or '1'} from ({input_sql})").fetchall()[0]
            tf_columns = "".join(
                f", cast({_literal_or_null(self.tf_values[c].get(v))} as double) as tf_{c}"
                for c, v in zip(self.tf_values, values, strict=False))
            self.con.execute(f"create or replace table rt_new_{party} as select *{tf_columns} from ({input_sql})")
        finally:
            if self.fast_input:
                self.con.unregister("rt_canonical_in")

    def _input_row_as_nightly(self, typed_source: str) -> None:
        """rt_input_<party> through the resolve stage's own builder (several statements)."""
        from pipelines.resolve.features import create_comparison_table

        party = self.party_type
        self.con.execute(f"create or replace temp table rt_canonical_{party} as select * from {typed_source}")
        create_comparison_table(self.con, f"rt_canonical_{party}", party, f"rt_input_{party}")

    def _input_sql_fast(self, typed_source: str, columns: set[str]) -> str:
        """The model input row as one query: the resolve stage's input SQL, plus the nickname
        variants of the first given name from the same look-up the nightly builder uses.
        `_check_fast_input` proves at start-up that both give the same row."""
        from pipelines.resolve.features import (
            block_key_sql,
            cantonese_pinyin_forms,
            comparison_input_sql,
            phonetic_keys,
        )

        sql = comparison_input_sql(typed_source, columns, self.party_type)
        # one record's block keys are never capped (its block is itself); stored records in a
        # block too large to compare carry none, so such a key finds no candidate
        keys = ", ".join(block_key_sql(self.party_type))
        if self.party_type != "person":
            tokens = self.con.execute(f"select org_name_tokens from ({sql})").fetchall()
            words = list((tokens[0][0] if tokens else None) or [])
            codes = phonetic_keys(words)
            org_sound = " ".join(codes[w] for w in words if w in codes) or None
            return (f"select *, {keys} from (select b.*, {_text_or_null(org_sound)}::varchar "
                    f"as org_name_sound from ({sql}) b)")
        first = self.con.execute(
            f"select given_name_first, given_name_norm, family_name_norm from ({sql})").fetchall()
        name, given, family = first[0] if first else (None, None, None)
        variants = ("null::varchar[]" if name is None
                    else "[" + _literals(self._nickname_variants(name)) + "]::varchar[]")
        forms = cantonese_pinyin_forms([given]).get(given) if given is not None else None
        sounds = "null::varchar[]" if not forms else "[" + _literals(forms) + "]::varchar[]"
        codes = phonetic_keys([w for w in (name, family) if w is not None])
        name_sound = (f"{codes[name]} {codes[family]}"
                      if name in codes and family in codes else None)
        return (f"select *, {keys} from (select b.*, {variants} as given_name_variants, "
                f"{sounds} as given_name_pinyin_forms, "
                f"{_text_or_null(name_sound)}::varchar as name_sound from ({sql}) b)")

    def _nickname_variants(self, name: str) -> list[str]:
        from pipelines.resolve.features import nickname_variants

        return nickname_variants([name])[name]

    def _check_fast_input(self) -> bool:
        """Stage a few stored records both ways; use the one-statement path only if rows agree."""
        party = self.party_type
        sample = self._check_sample
        for i in range(len(sample)):
            row = sample.iloc[[i]]
            self.fast_input = False
            self._stage_new_record(row)
            nightly = self.con.execute(f"select * from rt_new_{party}").df()
            self.fast_input = True
            self._stage_new_record(row)
            fast = self.con.execute(f"select * from rt_new_{party}").df()
            if list(fast.columns) != list(nightly.columns) or not fast.equals(nightly):
                return False
        return True

    def _score(self, top_k: int) -> list[Candidate]:
        """Score the candidates with the model; keep each customer's best pair, best first."""
        from splink.internals.realtime import compare_records

        party = self.party_type
        result = compare_records(f"rt_candidates_{party}", f"rt_new_{party}", self.settings, self.db_api,
                                 sql_cache_key=self.cache_key, join_condition=self.join_condition)
        try:
            cursor = self.con.execute(f"select * from {result.physical_name}")
            names = [d[0] for d in cursor.description]
            pairs = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        finally:
            result.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
        if not pairs:
            return []
        customer_of = dict(self.con.execute(
            f"select unique_id, customer_id from customer_of_{party} "
            f"where unique_id in ({_literals(sorted({p['unique_id_l'] for p in pairs}))})").fetchall())
        # Each customer's best pair (highest weight, then smallest record id), best customers first.
        pairs.sort(key=lambda p: (-p["match_weight"], p["unique_id_l"]))
        matched: dict[str, int] = {}
        rows = []
        for pair in pairs:
            customer = customer_of.get(pair["unique_id_l"])
            if customer is None:
                continue
            if customer not in matched:
                rows.append({**pair, "customer_id": customer})
            matched[customer] = matched.get(customer, 0) + 1
        rows = [{**row, "n_records_matched": matched[row["customer_id"]]} for row in rows[:top_k]]
        return [_candidate(row, party) for row in rows]

    def _candidate_ids(self) -> list[str]:
        """Stored records sharing a blocking key with the new record; those sharing most keys first."""
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
            rules.append({"sql": rule.blocking_rule_sql, "equi": equi})
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


def _literal_or_null(value: Any) -> str:
    return "null" if value is None else repr(float(value))


def _text_or_null(value: str | None) -> str:
    return "null" if value is None else quote_literal(value)


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
