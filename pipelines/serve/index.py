"""In-memory look-up indexes over one warehouse version, built set-based once at load.

They answer exactly what `pipelines.golden.lookup.lookup` answers (same keys, normalisation, scores
and ranking; tests compare the two), without scanning the warehouse per query: keys map to record
positions through dictionaries built from Arrow group-bys, and name similarity (Jaro–Winkler, the
same measure DuckDB's `jaro_winkler_similarity` computes) is scored with rapidfuzz against the
distinct name values only, then carried to records through inverted indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz.distance import JaroWinkler
from rapidfuzz.process import cdist

from pipelines.batching import Batcher
from pipelines.golden.lookup import (
    NAME_SIMILARITY_FLOOR,
    lookup_key,
    normalise_phone,
)

ROLE_SCORES = {"policyholder": 1.0, "applicant": 0.95, "insured": 0.9}
NOT_ALNUM = re.compile(r"[^a-z0-9]")
ID_NOISE = re.compile(r"[\s\-./]")


def _positions_by_key(keys, positions=None) -> dict:
    """key -> distinct row positions holding it, for the non-null, non-empty keys (an Arrow group-by)."""
    if positions is None:
        positions = pa.array(np.arange(len(keys), dtype=np.int64))
    table = pa.table({"key": keys, "pos": positions})
    table = table.filter(pc.and_(pc.is_valid(table["key"]), pc.not_equal(table["key"], "")))
    grouped = table.group_by("key").aggregate([("pos", "distinct")])
    return dict(zip(grouped["key"].to_pylist(), grouped["pos_distinct"].to_pylist(), strict=True))


def _text(column) -> pa.ChunkedArray:
    return pc.cast(column, pa.string())


def normalise_identifier(text: str) -> str:
    """National IDs and registration numbers as stored: upper case, no spaces, dashes, dots or slashes."""
    return ID_NOISE.sub("", text).upper()


SCORE_ALL_ABOVE = 0.25  # share of a vocabulary the bound keeps past which all of it is scored
_SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789"
_SYMBOL_OF = {c: i for i, c in enumerate(_SYMBOLS)}
_ONLY_SYMBOLS = re.compile(r"[a-z0-9]*")


def _symbol_counts(values: list[str], lengths: np.ndarray) -> np.ndarray | None:
    """Per symbol a-z, 0-9 (rows) the count in each value (columns); None unless every value is
    made of those symbols alone (the folded, joined names: `NameIndex` strips the rest), since
    the Jaro bound must count every character a value has."""
    if not values or not all(_ONLY_SYMBOLS.fullmatch(v) for v in values):
        return None
    text = np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8)
    owner = np.repeat(np.arange(len(values)), lengths)
    symbol = np.where(text >= ord("a"), text - ord("a"), text - ord("0") + 26).astype(np.int64)
    flat = np.bincount(symbol * len(values) + owner, minlength=len(_SYMBOLS) * len(values))
    return flat.reshape(len(_SYMBOLS), len(values)).astype(np.int16)


def _query_symbols(query: str) -> list[tuple[int, int]]:
    """(symbol row, count) of the query's characters that are symbols; any other character of
    the query matches no value of such a vocabulary."""
    found: dict[int, int] = {}
    for char in query:
        row = _SYMBOL_OF.get(char)
        if row is not None:
            found[row] = found.get(row, 0) + 1
    return list(found.items())


class _Vocabulary:
    """Distinct non-empty values of one text column, and, per value, the records holding it (CSR)."""

    def __init__(self, values: pa.ChunkedArray):
        encoded = pc.dictionary_encode(values.combine_chunks())
        self.values = encoded.dictionary.to_pylist()
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        empty = [i for i, v in enumerate(self.values) if not v]  # '' scores 0, as in DuckDB
        if empty:
            codes[np.isin(codes, empty)] = -1
        self.record_codes = codes
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes[codes >= 0], minlength=len(self.values))
        self.records_sorted = order[int((codes < 0).sum()):]
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.lengths = np.array([len(v) for v in self.values], dtype=np.int64)
        self._symbol_counts = _symbol_counts(self.values, self.lengths)  # the Jaro bound (`_reachable`)
        self._max_length = int(self.lengths.max()) if len(self.lengths) else 0

    def scores(self, query: str, cutoff: float) -> np.ndarray:
        """Jaro–Winkler similarity of every value to `query`, 0 below `cutoff` (DuckDB gives 0 for '')."""
        return self.scores_of_each([query], cutoff)[0]

    def scores_of_each(self, queries: list[str], cutoff: float) -> list[np.ndarray]:
        """`scores` of several queries in one pass (rapidfuzz compares them together)."""
        if not self.values or not any(queries):
            return [np.zeros(len(self.values)) for _ in queries]
        reachable = self._reachable([q for q in queries if q], cutoff)
        if reachable is None:
            matrix = cdist(queries, self.values, scorer=JaroWinkler.normalized_similarity,
                           score_cutoff=cutoff, dtype=np.float64)
        else:  # only the values that can reach the cutoff for some query are scored
            matrix = np.zeros((len(queries), len(self.values)))
            if len(reachable):
                matrix[:, reachable] = cdist(queries, [self.values[i] for i in reachable.tolist()],
                                             scorer=JaroWinkler.normalized_similarity,
                                             score_cutoff=cutoff, dtype=np.float64)
        return [matrix[i] if q else np.zeros(len(self.values)) for i, q in enumerate(queries)]

    def _reachable(self, queries: list[str], cutoff: float) -> np.ndarray | None:
        """Positions of the values whose Jaro–Winkler similarity to some query can reach `cutoff`,
        by an exact bound; None when the bound cannot be used (then every value is scored).

        Jaro = (m/|a| + m/|b| + (m - t)/m) / 3 for m matching characters, and a character
        matches at most once, so m <= M, the characters the two strings have in common counted
        with multiplicity; Winkler adds at most 4 * 0.1 * (1 - jaro). So JW >= cutoff needs
        M/|a| + M/|b| >= 3 * (cutoff - 0.4) / 0.6 - 1. Person names share letters with most
        person names, but a person's name with few organization names: at 1M this leaves ~1 in
        20 of the 42k organization names to score."""
        need = 3 * (cutoff - 0.4) / 0.6 - 1
        if self._symbol_counts is None or need <= 0:
            return None
        keep = np.zeros(len(self.values), dtype=bool)
        lengths = np.arange(self._max_length + 1)
        for query in queries:
            # the fewest common characters a value of each length needs: M >= need·|a|·|b| / (|a| + |b|)
            # (the slack keeps a score at the cutoff itself); an empty value never reaches it
            at_least = np.ceil(need * len(query) * lengths / (len(query) + lengths) - 1e-9)
            at_least[0] = 10**4
            common = np.zeros(len(self.values), dtype=np.int16)
            for symbol, count in _query_symbols(query):
                common += np.minimum(self._symbol_counts[symbol], count)
            keep |= common >= at_least.astype(np.int16)[self.lengths]
        kept = np.flatnonzero(keep)
        # short common words keep most values: then a scan of all costs less than the subset's list
        return None if len(kept) > SCORE_ALL_ABOVE * len(self.values) else kept

    def count_records(self, codes: np.ndarray) -> int:
        """How many records `records_of(codes)` gives, without gathering them."""
        return int((self.offsets[np.asarray(codes) + 1] - self.offsets[codes]).sum()) if len(codes) else 0

    def records_of(self, codes: np.ndarray) -> np.ndarray:
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64)
        # the codes' slices of records_sorted, gathered as one index array (a common name has
        # thousands of codes: no Python loop over them)
        starts, ends = self.offsets[codes], self.offsets[np.asarray(codes) + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return self.records_sorted[np.arange(total) + shift]

    def record_scores(self, value_scores: np.ndarray, records: np.ndarray) -> np.ndarray:
        codes = self.record_codes[records]
        return np.where(codes >= 0, value_scores[np.maximum(codes, 0)], 0.0) if len(value_scores) \
            else np.zeros(len(records))


class NameIndex:
    """`lookup(name=...)`'s similarity, computed against distinct values instead of every record."""

    def __init__(self, records: pa.Table):
        def column(name: str) -> pa.ChunkedArray:
            if name not in records.column_names:
                return pa.chunked_array([pa.nulls(records.num_rows, pa.string())])
            return pc.fill_null(_text(records[name]), "")

        def joined(*parts: pa.ChunkedArray) -> pa.ChunkedArray:
            text = pc.binary_join_element_wise(*parts, "") if len(parts) > 1 else parts[0]
            return pc.replace_substring_regex(text, r"[^a-z0-9]", "")

        given, family, org = column("given_name_norm"), column("family_name_norm"), column("org_name_norm")
        self.given = _Vocabulary(given)
        self.family = _Vocabulary(family)
        self.org = _Vocabulary(joined(org))
        self.whole = _Vocabulary(joined(given, family))
        self.whole_reversed = _Vocabulary(joined(family, given))
        self.family_joined = _Vocabulary(joined(family))

    def similar(self, whole: str, first: str, last: str) -> tuple[np.ndarray, np.ndarray]:
        """(record positions, similarity) of records at or above the floor, as lookup's SQL."""
        return self.similar_each([(whole, first, last)])[0]

    def similar_each(self, queries: list[tuple[str, str, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """`similar` of several (whole, first, last) queries, each vocabulary scanned once for all
        of them (rapidfuzz compares a batch of short queries to each value together: at 100k records
        8 queries cost what 4 single ones do; its `workers` threads cost more than they save here)."""
        floor = NAME_SIMILARITY_FLOOR
        org_scores = self.org.scores_of_each([q[0] for q in queries], floor)
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [
            [self._hits(self.org, scores, floor)] for scores in org_scores]
        two = [i for i, (_, first, last) in enumerate(queries) if first != last]
        one = [i for i, (_, first, last) in enumerate(queries) if first == last]
        if two:
            # the mean of two similarities reaches the floor only if each is >= 2 * floor - 1
            part_floor = 2 * floor - 1
            words = [queries[i][1] for i in two] + [queries[i][2] for i in two]
            given = self.given.scores_of_each(words, part_floor)
            family = self.family.scores_of_each(words, part_floor)
            n = len(two)
            for k, i in enumerate(two):
                g_first, g_last, f_first, f_last = given[k], given[n + k], family[k], family[n + k]
                for g_scores, f_scores in ((g_first, f_last), (g_last, f_first)):
                    records = self._records_with_both(g_scores, f_scores)
                    sim = (self.given.record_scores(g_scores, records)
                           + self.family.record_scores(f_scores, records)) / 2
                    parts[i].append((records, sim))
        if one:
            wholes = [queries[i][0] for i in one]
            for vocabulary, weight in ((self.whole, 1.0), (self.whole_reversed, 1.0),
                                       (self.family_joined, 0.95)):
                for i, scores in zip(one, vocabulary.scores_of_each(wholes, floor / weight),
                                     strict=True):
                    parts[i].append(self._hits(vocabulary, scores * weight, floor))
        out = []
        for found in parts:
            records = np.concatenate([p[0] for p in found])
            sims = np.concatenate([p[1] for p in found])
            keep = sims >= floor
            out.append((records[keep], sims[keep]))
        return out

    @staticmethod
    def _hits(vocabulary: _Vocabulary, scores: np.ndarray, floor: float):
        codes = np.flatnonzero(scores >= floor)
        records = vocabulary.records_of(codes)
        return records, vocabulary.record_scores(scores, records)

    def _records_with_both(self, g_scores: np.ndarray, f_scores: np.ndarray) -> np.ndarray:
        g_codes, f_codes = np.flatnonzero(g_scores > 0), np.flatnonzero(f_scores > 0)
        if len(g_codes) == 0 or len(f_codes) == 0:
            return np.zeros(0, dtype=np.int64)
        # walk the rarer side's records, keep those whose other part also passed
        if self.given.count_records(g_codes) <= self.family.count_records(f_codes):
            records = self.given.records_of(g_codes)
            other = self.family.record_codes[records]
            return records[(other >= 0) & (f_scores[np.maximum(other, 0)] > 0)]
        records = self.family.records_of(f_codes)
        other = self.given.record_codes[records]
        return records[(other >= 0) & (g_scores[np.maximum(other, 0)] > 0)]


@dataclass
class Hit:
    customer_id: str
    score: float
    reason: str


class LookupIndex:
    """Every look-up key of one warehouse version, in memory."""

    def __init__(self, records: pa.Table, links: pa.Table, history: pa.Table, live_ids: set[str],
                 confidence: dict[str, float | None] | None = None):
        self.customer = _text(records["customer_id"]).to_pylist()
        # customers as codes in customer_id order (a tie broken by code is broken by id), with
        # the look-up's tie-break, so that ranking thousands of name hits is array work
        encoded = pc.dictionary_encode(pc.fill_null(_text(records["customer_id"]), "").combine_chunks())
        distinct = encoded.dictionary.to_pylist()
        order = sorted(range(len(distinct)), key=distinct.__getitem__)
        code_of = np.empty(len(distinct), dtype=np.int64)
        code_of[order] = np.arange(len(distinct))
        self.customer_ids = [distinct[i] for i in order]
        self.customer_code = code_of[encoded.indices.to_numpy(zero_copy_only=False)]
        confidence = confidence or {}
        self.ranked_known = np.array([c in confidence for c in self.customer_ids], dtype=bool)
        self.ranked_confidence = np.array([confidence.get(c) or 0.0 for c in self.customer_ids],
                                          dtype=np.float64)
        self.system = _text(records["source_system"]).to_pylist()
        self.mobile = _text(records["phone_mobile"]).to_pylist()
        n = records.num_rows
        self.by_phone = _positions_by_key(
            pa.chunked_array([*_text(records["phone_mobile"]).chunks,
                              *_text(records["phone_landline"]).chunks], type=pa.string()),
            pa.array(np.concatenate([np.arange(n), np.arange(n)]).astype(np.int64)))
        self.by_email = _positions_by_key(pc.utf8_lower(_text(records["email"])))
        id_columns = [c for c in ("national_id", "registration_id") if c in records.column_names]
        self.by_identifier = _positions_by_key(
            pa.chunked_array([chunk for c in id_columns for chunk in pc.utf8_upper(
                pc.replace_substring_regex(_text(records[c]), r"[\s\-./]", "")).chunks], type=pa.string()),
            pa.array(np.concatenate([np.arange(n)] * len(id_columns)).astype(np.int64))) if id_columns else {}
        self.link_customer = _text(links["customer_id"]).to_pylist()
        self.link_role = _text(links["role"]).to_pylist()
        self.link_policy = _text(links["policy_number"]).to_pylist()
        self.by_policy = _positions_by_key(pc.utf8_upper(_text(links["policy_number"])))
        self.merged_into = dict(zip(
            _text(history["customer_id"]).to_pylist(), _text(history["related_customer_id"]).to_pylist(),
            strict=True))
        self.live_ids = live_ids
        self.names = NameIndex(records)
        # one runner: a scan holds the GIL, so two would only take turns; a batch waits up to
        # 5 ms for look-ups already in the service (`name_lookup_arriving`)
        self._name_batcher: Batcher[tuple[str, int], list[Hit]] = Batcher(
            [self.names], lambda _, queries: self.top_name_hits_each(queries), gather_seconds=0.005)
        self.name_lookup_arriving = self._name_batcher.arriving
        self.name_batching = self._name_batcher.stats

    def hits(self, key: str, value: str) -> list[Hit]:
        """Candidate customers for one key ('id', 'phone', 'email', 'policy', 'national_id', 'name')."""
        if key == "national_id":
            return self._identifier_hits(normalise_identifier(value))
        kind, params = lookup_key(*(value if k == key else None
                                    for k in ("id", "phone", "email", "policy", "name")))
        if kind == "id":
            return self._id_hits(params[0])
        if kind == "phone":
            return self._phone_hits(normalise_phone(value))
        if kind == "email":
            return self._record_hits(self.by_email.get(params[0], []), "e-mail")
        if kind == "policy":
            return self._policy_hits(params[0].upper())
        return self._name_hits(*params)

    def top_name_hits(self, value: str, limit: int) -> list[Hit]:
        """The `limit` best customers by name among those given `confidence`, ranked as the
        look-up ranks them: similarity, then confidence, then customer_id (a short common
        name meets ~10,000 customers: ranked in arrays, Hits made for the returned ones only).
        Look-ups from several threads at once share one scan of the vocabularies (`Batcher`)."""
        return self._name_batcher.submit((value, limit))

    def top_name_hits_each(self, queries: list[tuple[str, int]]) -> list[list[Hit]]:
        """`top_name_hits` of several (name, limit) queries, the vocabularies scanned once."""
        parts = [lookup_key(None, None, None, None, value)[1] for value, _ in queries]
        found = self.names.similar_each([(whole, first, last) for whole, first, last in parts])
        return [self._ranked_names(records, sims, limit)
                for (records, sims), (_, limit) in zip(found, queries, strict=True)]

    def _ranked_names(self, records: np.ndarray, sims: np.ndarray, limit: int) -> list[Hit]:
        codes = self.customer_code[records]
        keep = self.ranked_known[codes]
        codes, sims = codes[keep], sims[keep]
        if len(codes) == 0:
            return []
        order = np.lexsort((-sims, codes))  # per customer, its best similarity first
        codes, sims = codes[order], sims[order]
        first = np.concatenate([[True], codes[1:] != codes[:-1]])
        codes, sims = codes[first], sims[first]
        top = np.lexsort((codes, -self.ranked_confidence[codes], -sims))[:limit]
        return [Hit(self.customer_ids[c], s, f"name {round(s, 2)} similar")
                for c, s in zip(codes[top].tolist(), sims[top].tolist(), strict=True)]

    def _id_hits(self, customer_id: str) -> list[Hit]:
        hits = []
        if customer_id in self.live_ids:
            hits.append(Hit(customer_id, 1.0, "customer ID"))
        current, hops, seen = customer_id, 0, set()
        while current in self.merged_into and self.merged_into[current] and hops < 100:
            current = self.merged_into[current]
            if current in seen:
                break
            seen.add(current)
            hops += 1
            if current in self.live_ids:
                hits.append(Hit(current, 0.9, f"merged from {customer_id}"))
        return hits

    def _phone_hits(self, phones: list[str]) -> list[Hit]:
        wanted = set(phones)
        positions = sorted({p for phone in phones for p in self.by_phone.get(phone, [])})
        per_customer: dict[str, list[int]] = {}
        for p in positions:
            per_customer.setdefault(self.customer[p], []).append(p)
        hits = []
        for customer, rows in per_customer.items():
            best = max(1.0 if self.mobile[p] in wanted else 0.6 for p in rows)
            hits.append(Hit(customer, best + len(rows) / 1000.0,
                            f"phone on {len(rows)} record(s): {self._systems(rows)}"))
        return hits

    def _record_hits(self, positions: list[int], what: str) -> list[Hit]:
        per_customer: dict[str, list[int]] = {}
        for p in positions:
            per_customer.setdefault(self.customer[p], []).append(p)
        return [Hit(c, 1.0 + len(rows) / 1000.0, f"{what} on {len(rows)} record(s): {self._systems(rows)}")
                for c, rows in per_customer.items()]

    def _identifier_hits(self, identifier: str) -> list[Hit]:
        return self._record_hits(self.by_identifier.get(identifier, []), "national ID")

    def _policy_hits(self, policy: str) -> list[Hit]:
        per_customer: dict[str, list[int]] = {}
        for p in self.by_policy.get(policy, []):
            per_customer.setdefault(self.link_customer[p], []).append(p)
        hits = []
        for customer, rows in per_customer.items():
            roles = sorted({self.link_role[p] for p in rows})
            score = max(ROLE_SCORES.get(self.link_role[p], 0.8) for p in rows)
            hits.append(Hit(customer, score, f"policy {self.link_policy[rows[0]]} as {', '.join(roles)}"))
        return hits

    def _name_hits(self, whole: str, first: str, last: str) -> list[Hit]:
        records, sims = self.names.similar(whole, first, last)
        best: dict[str, float] = {}
        for position, sim in zip(records.tolist(), sims.tolist(), strict=True):
            customer = self.customer[position]
            if sim > best.get(customer, -1.0):
                best[customer] = sim
        return [Hit(c, s, f"name {round(s, 2)} similar") for c, s in best.items()]

    def _systems(self, positions: list[int]) -> str:
        return ", ".join(sorted({self.system[p] for p in positions}))
