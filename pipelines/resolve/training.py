"""`ucv train`: build and fit one Splink model per party type from the user's own staged records.

The model is derived from a field profile of the data (profile.py, model.py): comparisons from
the populated fields, prediction blocking rules kept near linear (pre-filter counts in SQL, then
Splink's blocking analysis for cumulative counts), EM passes chosen so every comparison gets its
m estimated, u by seeded random sampling, the prior from the deterministic rules the data
supports. With `backend: spark` the estimation steps (prior, u, EM) run on a Splink Linker over
Spark (spark.py `SparkTraining`) and their parameters are copied back: everything else, and the
saved model's SQL dialect, stay DuckDB's. Parameters are rounded so the same data and seed give
the same bytes. Beside each model: `<party>-v<N>.profile.json` (what it was trained on) and
`<party>-v<N>.report.html`.
Training either writes a usable model or raises TrainingError with one paragraph naming the
missing evidence. Nightly runs only load these files (see predict.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.resolve.backend import BACKENDS, backend_name, database_api, duckdb_connection
from pipelines.resolve.config import PARTY_TYPES, max_block_records, training_settings
from pipelines.resolve.features import CAPPED_KEYS, COLUMNS, create_comparison_table
from pipelines.resolve.model import (
    BLOCKING_CANDIDATES,
    DETERMINISTIC_CANDIDATES,
    EM_CANDIDATES,
    MOBILE_DIFFERENT_LEVEL,
    MOBILE_DIFFERS_TOO,
    NAME_FIELDS,
    CandidateRule,
    choose_comparisons,
    rule_populated,
    settings_for,
)
from pipelines.resolve.profile import field_profile
from pipelines.settings import MODELS_DIR
from pipelines.sql import quote_literal

log = logging.getLogger(__name__)
MODEL_FILE = re.compile(r"^(?P<party>[a-z]+)-v(?P<version>\d+)\.json$")
PROFILE_SUFFIX = ".profile.json"
REPORT_SUFFIX = ".report.html"
PROFILE_FORMAT = 1

# derived comparison-table columns and the canonical fields they come from (for the fit check)
DERIVED_FROM = {
    "birth_date_text": ["birth_date"], "name_tokens": ["given_name_norm", "family_name_norm"],
    "given_name_variants": ["given_name_norm"], "given_name_pinyin_forms": ["given_name_norm"],
    "street_house": ["street", "house_number"],
    "street_key": ["street"], "email_local": ["email"], "email_domain": ["email"],
    "phone_any": ["phone_mobile", "phone_landline"],
    "name_sound": ["given_name_norm", "family_name_norm"], "org_name_sound": ["org_name_tokens"],
    "name_city_key": ["given_name_norm", "family_name_norm", "city"],
    "name_city_key_gf": ["given_name_norm", "family_name_norm", "city"],
    "name_city_key_fg": ["given_name_norm", "family_name_norm", "city"],
    "name_sound_city_key": ["given_name_norm", "family_name_norm", "city"],
    "org_sound_city_key": ["org_name_tokens", "city"],
}


class TrainingError(ValueError):
    """The data lacks the evidence to train a model; the message says which, in one paragraph."""


@dataclass
class TrainedModel:
    """A fitted model of one party type, what it was trained on, and how it was built."""

    party_type: str
    settings: dict[str, Any]
    profile: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


class _Stopwatch:
    """Seconds per training step (for the report and the bench; not part of the model)."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = self._now()
        self.laps[step] = round(self.laps.get(step, 0.0) + now - self._last, 2)
        self._last = now


def _round_floats(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v, digits) for v in value]
    return value


def _populated(profile: dict[str, Any], cfg: dict[str, Any]):
    min_rate, min_records = float(cfg["min_fill_rate"]), int(cfg["min_filled_records"])

    def has(column: str) -> bool:
        entry = profile["fields"].get(column)
        return bool(entry) and entry["fill_rate"] >= min_rate and entry["filled"] >= min_records
    return has


def prefilter_count(con, table: str, rule: CandidateRule, growth: float = 1.0,
                    personal_block: int = 0, cap: int | None = None) -> float:
    """Pairs a rule's equi-join makes (before Splink's l.id < r.id filter), by GROUP BY counts:
    cheap even for a rule that would explode, so it can be rejected before any pair is built.

    With `growth` f > 1: the pairs per f-th of a population f times larger. A block of up to
    `personal_block` records is one customer's (or one household's) own key, an e-mail or a rare
    name: more customers bring more such blocks, each as big as now. A larger block is a key shared
    by chance (a city, Wang Wei + Shanghai), which f times more customers make f times larger.
    A key capped at `cap` records (features.CAPPED_KEYS) is NULL on a block grown past it."""
    left, right = rule.left, rule.right_columns
    not_null = " AND ".join(f"({c}) IS NOT NULL" for c in set(left) | set(right))
    f, d = float(growth), int(personal_block)
    if not rule.right:
        keys = ", ".join(left)
        grown = "" if cap is None else f"WHEN k * {f} > {int(cap)} THEN 0 "
        pairs = "k * (k - 1) / 2" if f == 1.0 else (
            f"CASE WHEN k <= {d} THEN k * (k - 1) / 2 {grown}"
            f"ELSE (k * {f}) * (k * {f} - 1) / 2 / {f} END")
        sql = (f"SELECT coalesce(sum({pairs}), 0) FROM (SELECT count(*) AS k FROM {table} "
               f"WHERE {not_null} GROUP BY {keys})")
    else:
        l_keys = ", ".join(f"{c} AS k{i}" for i, c in enumerate(left))
        r_keys = ", ".join(f"{c} AS k{i}" for i, c in enumerate(right))
        on = " AND ".join(f"a.k{i} = b.k{i}" for i in range(len(left)))
        grown = "" if cap is None else f"WHEN greatest(a.n, b.n) * {f} > {int(cap)} THEN 0 "
        pairs = "a.n * b.n / 2" if f == 1.0 else (
            f"CASE WHEN a.n + b.n <= {d} THEN a.n * b.n / 2 {grown}"
            f"ELSE a.n * b.n * {f} / 2 END")
        sql = (f"WITH a AS (SELECT {l_keys}, count(*) AS n FROM {table} WHERE {not_null} "
               f"GROUP BY ALL), b AS (SELECT {r_keys}, count(*) AS n FROM {table} "
               f"WHERE {not_null} GROUP BY ALL) "
               f"SELECT coalesce(sum({pairs}), 0) FROM a JOIN b ON {on}")
    return float(con.execute(sql).fetchall()[0][0])


def choose_blocking_rules(con, table: str, party_type: str, n: int, has,
                          cfg: dict[str, Any], marginal_counts=None
                          ) -> tuple[list[CandidateRule], list[dict[str, Any]]]:
    """Prediction blocking rules: populated candidates whose comparisons stay near linear at the
    size the model will run at (`expected_records`, default the training size): a rule on a key
    shared by chance (name + city) grows per record with the data, one on a personal key does
    not (prefilter_count with growth).

    The budget for all rules together counts what each rule adds to the ones before it
    (`marginal_counts(rules)`: Splink's blocking analysis), each scaled to the expected size as
    its own count is; without it, each rule's own count (which counts shared pairs again)."""
    per_rule = float(cfg["max_rule_comparisons_per_record"])
    expected = int(cfg.get("expected_records") or 0)
    size = max(expected, n)
    budget = float(cfg["max_comparisons_per_record"])
    where = f" at {size:,} records" if size > n else ""
    passing: list[tuple[CandidateRule, float, float]] = []  # rule, per record now, at size
    rows: list[dict[str, Any]] = []
    for rule in BLOCKING_CANDIDATES[party_type]:
        row: dict[str, Any] = {"rule": rule.sql}
        rows.append(row)
        if not rule_populated(rule, has):
            row["excluded"] = "fields not populated"
            continue
        count = int(prefilter_count(con, table, rule))
        row["comparisons"] = count
        row["per_record"] = round(count / n, 3)
        at_size = count / n
        if size > n:
            capped = rule.fields & set(CAPPED_KEYS[party_type])
            at_size = prefilter_count(con, table, rule, size / n,
                                      int(cfg.get("personal_block_records", 10)),
                                      max_block_records() if capped else None) / n
            row["per_record_at_expected"] = round(at_size, 3)
        if at_size > per_rule:
            row["excluded"] = f"{at_size:.2f} comparisons per record{where} (limit {per_rule})"
        elif count == 0:
            row["excluded"] = "finds no pair"
        else:
            passing.append((rule, count / n, at_size))
            row["_passing"] = len(passing) - 1
    added = [at for _, _, at in passing]
    if marginal_counts is not None and passing:
        marginals = marginal_counts([rule for rule, _, _ in passing])
        added = [m["marginal"] / n * (at / now if now else 1.0)
                 for m, (_, now, at) in zip(marginals, passing, strict=True)]
    chosen: list[CandidateRule] = []
    total = 0.0
    for row in rows:
        i = row.pop("_passing", None)
        if i is None:
            continue
        if marginal_counts is not None:
            row["adds_per_record"] = round(added[i], 3)
        if total + added[i] > budget:
            row["excluded"] = f"over the budget of {budget:g} per record{where}"
            continue
        chosen.append(passing[i][0])
        total += added[i]
    return chosen, rows


def _cumulative_counts(sdf, rules: list[CandidateRule], n: int) -> list[dict[str, Any]]:
    """Splink's blocking analysis of the chosen rules: marginal and cumulative comparisons."""
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    records = count_comparisons_from_blocking_rules(
        sdf, blocking_rules=[r.sql for r in rules], link_type="dedupe_only",
        record_sample_proportion=min(1.0, math.sqrt(200_000 / n)) if n else 1.0)
    return [{"rule": r["blocking_rule"], "marginal": int(r["marginal_comparison_count"]),
             "cumulative": int(r["cumulative_comparison_count"]),
             "is_estimate": bool(r["is_estimate"])} for r in records]


def _comparison_columns(linker) -> dict[str, set[str]]:
    return {c.output_column_name: {col.input_name for col in
                                   c._input_columns_used_by_case_statement}
            for c in linker._settings_obj.comparisons}


def _rule_columns(rule: CandidateRule) -> set[str]:
    from splink.internals.parse_sql import get_columns_used_from_sql

    return set(get_columns_used_from_sql(rule.sql, "duckdb"))


def _source_reach(profile: dict[str, Any], cfg: dict[str, Any]
                  ) -> tuple[list[str], Any]:
    """The sources that hold a real share of the records, and `reaches(columns, source)`: whether
    the source fills those columns on most of its records (so its pairs take part in a pass
    blocking on them, or its records carry the comparison's evidence)."""
    em = cfg["em"]
    total = max(int(profile.get("records", 0)), 1)
    sources = [s for s, entry in profile.get("by_source", {}).items()
               if entry["records"] / total >= float(em.get("source_min_share", 0.05))]

    def reaches(cols: set[str], source: str) -> bool:
        rates = profile["by_source"][source]["fill_rate"]
        return all(rates.get(c, 0.0) >= 0.5 for c in cols)

    return sources, reaches


class _UnobservedLevels(logging.Filter):
    """Splink warns once per level an EM pass never sees ("Level X on comparison Y not observed
    in dataset"); another pass usually estimates it. Kept for the report, off the console."""

    def __init__(self) -> None:
        super().__init__()
        self.levels: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        match = re.search(r"Level (.+) on comparison (\S+) not observed", record.getMessage())
        if match:
            self.levels.add(f"{match.group(2)}: {match.group(1)}")
            return False
        return True


@contextlib.contextmanager
def _unobserved_levels_quiet():
    em_log = logging.getLogger("splink.internals.expectation_maximisation")
    quiet = _UnobservedLevels()
    em_log.addFilter(quiet)
    try:
        yield quiet.levels
    finally:
        em_log.removeFilter(quiet)


def _same_sql(sql: str) -> str:
    return sql


def _run_em(linker, con, table: str, party_type: str, n: int, has, cfg: dict[str, Any],
            profile: dict[str, Any] | None = None, columns: dict[str, set[str]] | None = None,
            dialect=_same_sql) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """EM passes until each comparison has m estimated `estimates_per_comparison` times (a pass
    estimates the comparisons whose fields it does not block on), at most `max_passes`.

    Each comparison's m must also be learnt from the pairs of every source whose records carry
    its evidence: a pass blocking on fields one source rarely fills (birth date, mobile) never
    sees that source's pairs, and m learnt without them mis-scores its records (web leads with
    only a name and a city). Passes continue until every such source is reached.
    `dialect` turns a rule's DuckDB SQL into the linker's (Spark's); `columns` default to the
    input columns of the linker's comparisons.
    """
    from splink.internals.exceptions import SplinkException

    em = cfg["em"]
    target, max_passes = int(em["estimates_per_comparison"]), int(em["max_passes"])
    columns = columns or _comparison_columns(linker)
    estimated = dict.fromkeys(columns, 0)
    sources, reaches = _source_reach(profile or {"records": 0, "by_source": {}}, cfg)
    # (comparison, source) pairs still to learn from: the source fills one of its fields
    unreached = {(c, s) for c, cols in columns.items() for s in sources
                 if any(reaches({col}, s) for col in cols)}
    passes: list[dict[str, Any]] = []
    for rule in EM_CANDIDATES[party_type]:
        if sum(1 for p in passes if "estimated" in p) >= max_passes:
            break
        if all(v >= target for v in estimated.values()) and not unreached:
            break
        if not rule_populated(rule, has):
            continue
        blocked = _rule_columns(rule)
        covers = [c for c, cols in columns.items() if not cols & blocked]
        reached = {(c, s) for c in covers for s in sources
                   if (c, s) in unreached and reaches(blocked, s)}
        if not any(estimated[c] < target for c in covers) and not reached:
            continue
        count = prefilter_count(con, table, rule)
        row: dict[str, Any] = {"rule": rule.sql, "pairs": count}
        passes.append(row)
        if count < int(em["min_pairs"]) or count > float(em["max_pairs"]):
            row["skipped"] = (f"{count:,} pairs (needs {int(em['min_pairs'])} to "
                              f"{float(em['max_pairs']):,.0f})")
            continue
        try:
            with _unobserved_levels_quiet() as unobserved:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    dialect(rule.sql), estimate_without_term_frequencies=True)
        except (SplinkException, ValueError) as error:
            # ValueError: Splink 5 refuses an m it computed as 0.0 (every pair at a level scored
            # as certainly no match), which small data can produce; the pass teaches nothing
            row["skipped"] = f"EM failed: {str(error).splitlines()[0]}"
            continue
        if unobserved:
            row["levels_not_observed"] = sorted(unobserved)
        row["estimated"] = covers
        row["sources"] = sorted(s for s in sources if reaches(blocked, s))
        unreached -= reached
        for c in covers:
            estimated[c] += 1
    if unreached:
        log.info("EM saw no pass reaching: %s", ", ".join(
            f"{c} in {s}" for c, s in sorted(unreached)))
    return estimated, passes


def _deterministic_rules(con, table: str, party_type: str, has) -> list[CandidateRule]:
    """The first tier of deterministic rules with a populated rule that finds pairs."""
    for tier in DETERMINISTIC_CANDIDATES[party_type]:
        rules = [r for r in tier if rule_populated(r, has) and prefilter_count(con, table, r) > 0]
        if rules:
            return rules
    return []


def used_fields(settings: dict[str, Any], party_type: str) -> list[str]:
    """Canonical fields the model reads (comparisons and blocking), for the nightly fit check."""
    text = json.dumps([settings["comparisons"], settings["blocking_rules_to_generate_predictions"]])
    words = set(re.findall(r"[a-z_]+", text))
    fields = {c for c in COLUMNS[party_type] if c in words or f"{c}_l" in words}
    for derived, bases in DERIVED_FROM.items():
        if derived in words or f"{derived}_l" in words:
            fields |= set(bases)
    return sorted(fields - {"source_system", "country"})


def _missing_evidence(party_type: str, profile: dict[str, Any], has, what: str) -> TrainingError:
    populated = sorted(c for c in profile["fields"] if has(c))
    return TrainingError(
        f"Cannot train the {party_type} model on {profile['records']:,} {party_type} records: "
        f"{what}. Populated fields: {', '.join(populated) or 'none'}. Map the missing fields "
        "in the source mappings (schemas/sources/*.yaml), or lower training.min_fill_rate in "
        "resolution.yaml if the field is rare by nature.")


def _training_engine(backend: str, con, table: str):
    """Where Splink's estimation steps run: a context giving None for DuckDB (the linker on the
    comparison table itself), else a `SparkTraining` holding the table on Spark."""
    if backend == "duckdb":
        return contextlib.nullcontext()
    from pipelines.resolve.backend import backend_options
    from pipelines.resolve.spark import SparkTraining

    return SparkTraining(con, table, backend_options("spark"))


def train_party_model(records_path, party_type: str, seed: int,
                      labels: dict[str, Any] | None = None,
                      expected_records: int | None = None,
                      backend: str | None = None) -> TrainedModel:
    """Build and fit one party type's model on canonical source records (blocking judged at
    `expected_records`, default training.blocking.expected_records; estimation on `backend`,
    default the configured one)."""
    engine = backend or backend_name()
    if engine not in BACKENDS:
        raise ValueError(f"unknown resolution backend {engine!r} (expected one of "
                         f"{', '.join(BACKENDS)})")
    cfg = training_settings()
    if expected_records:
        cfg = {**cfg, "blocking": {**cfg["blocking"], "expected_records": expected_records}}
    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    table = f"train_{party_type}"
    clock = _Stopwatch()
    n = create_comparison_table(con, records_path, party_type, table)
    if n < 2:
        raise TrainingError(f"Cannot train the {party_type} model: the records hold {n} "
                            f"{party_type} record(s), too few to learn from.")
    profile = field_profile(con, table, party_type)
    clock.lap("prepare_and_profile")
    has = _populated(profile, cfg)
    names = NAME_FIELDS[party_type]
    if not any(has(f) for f in names):
        raise _missing_evidence(party_type, profile, has, f"no name ({' or '.join(names)}) is "
                                "populated, and without a name records cannot be told apart")
    choice = choose_comparisons(party_type, has)
    if len(choice.comparisons) < 2:
        raise _missing_evidence(party_type, profile, has, "fewer than two pieces of evidence "
                                "can be compared (" + "; ".join(f"{k}: {v}" for k, v in
                                                                 choice.excluded.items()) + ")")
    blocking_cfg = cfg["blocking"]
    if blocking_cfg.get("expected_records"):
        # the setting counts every source record; this party type grows in the same proportion
        source = f"read_parquet({quote_literal(records_path)})"
        total = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
        blocking_cfg = {**blocking_cfg, "expected_records":
                        round(int(blocking_cfg["expected_records"]) * n / max(total, 1))}
    sdf = db_api.register(table)
    rules, blocking_rows = choose_blocking_rules(
        con, table, party_type, n, has, blocking_cfg,
        marginal_counts=lambda candidates: _cumulative_counts(sdf, candidates, n))
    if not rules:
        raise _missing_evidence(party_type, profile, has, "no blocking rule is both populated "
                                "and selective enough to stay near linear")
    clock.lap("choose_blocking_rules")
    deterministic = _deterministic_rules(con, table, party_type, has)
    if not deterministic:
        raise _missing_evidence(party_type, profile, has, "no deterministic rule (an identifier, "
                                "or name with birth date and a contact) finds any pair, so the "
                                "share of matching records cannot be estimated")
    with _training_engine(engine, con, table) as spark:
        linker, model, estimated, em_passes, excluded = _estimate_parameters(
            sdf, spark, con, table, party_type, n, has, cfg, profile, choice, rules,
            deterministic, seed, clock)
    model = apply_parameter_rules(condition_on_mobile(model), float(cfg["unobserved_else_weight"]),
                                  (cfg.get("max_level_weight") or {}).get(party_type) or {})
    model = scale_own_tf_levels(model, con, table)
    model = _round_floats(model, int(cfg["round_digits"]))
    fit_profile = {"format": PROFILE_FORMAT, "party_type": party_type, "seed": seed,
                   "training_records": n, "used_fields": used_fields(model, party_type),
                   "min_fill_rate": float(cfg["min_fill_rate"]), "profile": profile}
    report = {
        "records": n, "excluded_comparisons": excluded,
        "blocking": blocking_rows, "blocking_cumulative": _cumulative_counts(sdf, rules, n),
        "em_passes": em_passes, "m_estimates": estimated,
        "deterministic_rules": [r.sql for r in deterministic],
        "probability_two_random_records_match": model["probability_two_random_records_match"],
        "backend": engine,
    }
    from pipelines.resolve.report import chart_specs, label_metrics

    clock.lap("blocking_analysis")
    report["charts"] = chart_specs(linker)
    clock.lap("charts")
    if labels:
        report["labels"] = label_metrics(db_api, table, model, party_type, labels)
        clock.lap("labels")
    report["seconds"] = clock.laps
    return TrainedModel(party_type, model, _round_floats(fit_profile, 6), report)


def _estimate_parameters(sdf, spark, con, table: str, party_type: str, n: int, has,
                         cfg: dict[str, Any], profile: dict[str, Any], choice, rules,
                         deterministic, seed: int, clock: _Stopwatch):
    """Prior, u and EM passes, retried without the comparisons no EM pass could estimate.

    Returns the trained linker (on Spark when `spark` is a SparkTraining), the fitted settings in
    DuckDB's dialect, m estimates per comparison, the EM passes and the excluded comparisons.
    """
    from splink import Linker
    from splink.internals.exceptions import SplinkException

    dialect = spark.sql if spark is not None else _same_sql
    excluded = dict(choice.excluded)
    comparisons = list(choice.comparisons)
    for _attempt in range(len(comparisons)):
        # the DuckDB linker always holds the settings: it is the one trained, or the template
        # whose settings a Spark linker gets translated (and whose dialect the model is saved in)
        local = Linker(sdf, settings_for(party_type, comparisons, [r.sql for r in rules]),
                       log_level=logging.WARNING)
        untrained = local.misc.save_model_to_json()
        linker = local if spark is None else spark.linker(untrained)
        try:
            linker.training.estimate_probability_two_random_records_match(
                [dialect(r.sql) for r in deterministic],
                recall=float(cfg["deterministic_rules_recall"]))
            linker.training.estimate_u_using_random_sampling(
                max_pairs=float(cfg["u_max_pairs"]), seed=seed, min_count_per_level=None,
                num_chunks=1)
        except SplinkException as error:
            raise _missing_evidence(party_type, profile, has,
                                    f"Splink could not estimate u or the prior ({error})"
                                    ) from None
        clock.lap("prior_and_u")
        estimated, em_passes = _run_em(linker, con, table, party_type, n, has, cfg, profile,
                                       columns=_comparison_columns(local), dialect=dialect)
        clock.lap("em")
        unestimated = [c for c, k in estimated.items() if k == 0]
        if not unestimated:
            break
        for name in unestimated:
            excluded[name] = ("m could not be estimated: every EM pass that finds pairs "
                              "blocks on its fields")
        comparisons = [c for c in comparisons
                       if c.create_output_column_name() not in unestimated]
        if len(comparisons) < 2:
            raise _missing_evidence(party_type, profile, has, "no EM pass could estimate m for "
                                    + ", ".join(unestimated))
    model = linker.misc.save_model_to_json()
    if spark is not None:
        from pipelines.resolve.spark import copy_trained_parameters

        model = copy_trained_parameters(untrained, model)
    return linker, model, estimated, em_passes, excluded


def apply_parameter_rules(model: dict[str, Any], unobserved_else_weight: float,
                          max_weight: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Fill levels EM never saw among matches, and cap listed level weights (resolution.yaml).

    An unseen "different" (last) level is contradicting evidence: it gets the weight
    `unobserved_else_weight`. An unseen similarity level (a typo level, say) gets weight 0.
    """
    for comparison in model["comparisons"]:
        caps = max_weight.get(comparison["output_column_name"], {})
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for position, level in enumerate(levels):
            m, u = level.get("m_probability"), level.get("u_probability")
            if m is None and u is not None:
                is_else = position == len(levels) - 1
                level["m_probability"] = u * 2**unobserved_else_weight if is_else else u
            if u is None and m is not None:
                # a level random pairs never reach: as strong as the rarest level seen
                seen = [lv["u_probability"] for lv in levels if lv.get("u_probability")]
                level["u_probability"] = min(seen) if seen else m
            cap = caps.get(level["label_for_charts"])
            m, u = level.get("m_probability"), level.get("u_probability")
            if cap is not None and m and (u is None or math.log2(m / u) > cap):
                level["u_probability"] = m / 2**cap
    return model


def condition_on_mobile(model: dict[str, Any]) -> dict[str, Any]:
    """Turn the joint m and u of the household's "mobile differs too" levels into m and u given
    that the mobiles differ (model.MOBILE_DIFFERS_TOO): divided by the mobile comparison's
    "Different personal mobile" m and u, so the two comparisons add up to the joint weight
    instead of counting the different mobile twice. Without a mobile comparison (or before its
    level is estimated) the joint estimate is already the right weight and is left alone."""
    by_name = {c["output_column_name"]: c for c in model["comparisons"]}
    mobile = by_name.get("phone_mobile")
    differs = next((lv for lv in (mobile or {}).get("comparison_levels", [])
                    if lv.get("label_for_charts") == MOBILE_DIFFERENT_LEVEL), None)
    m_d, u_d = (differs or {}).get("m_probability"), (differs or {}).get("u_probability")
    if not (m_d and u_d):
        return model
    levels = by_name.get("household", {}).get("comparison_levels", [])
    by_label = {lv.get("label_for_charts"): lv for lv in levels}
    for level in levels:
        label = str(level.get("label_for_charts", ""))
        if not label.endswith(MOBILE_DIFFERS_TOO):
            continue
        base = by_label.get(label[: -len(MOBILE_DIFFERS_TOO)], {})
        for key, d in (("m_probability", m_d), ("u_probability", u_d)):
            if level.get(key) is not None:
                level[key] = min(1.0, level[key] / d)
            elif base.get(key) is not None:
                # never seen jointly: fall back to the independence the base level assumes
                level[key] = base[key]
    return model


def scale_own_tf_levels(model: dict[str, Any], con, table: str) -> dict[str, Any]:
    """A level whose term-frequency adjustment has no exact-match level to take its scale from
    (Splink's `disable_tf_exact_match_detection`: "the same name parts in another order") scores
    log2(m) - log2(tf(value)), as if every random pair sharing the value were at this level.
    Only a share q = u / P(same value) of them is, so m is multiplied by P(same value) / u, with
    P(same value) the sum of squared term frequencies in the training records: the pair then
    scores log2(m) - log2(tf(value) * q). Measured before: "qiu lei" / "lei qiu" with one
    e-mail scored 5.5, under the match threshold, on a profile of web leads."""
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            column = level.get("tf_adjustment_column")
            m, u = level.get("m_probability"), level.get("u_probability")
            if not (level.get("disable_tf_exact_match_detection") and column and m and u):
                continue
            same = con.execute(f"""SELECT sum(k * k) / (sum(k) * sum(k)) FROM (
                SELECT count(*)::DOUBLE AS k FROM {table} WHERE {column} IS NOT NULL
                GROUP BY {column})""").fetchall()[0][0]
            if same:
                level["m_probability"] = min(1.0, m * float(same) / u)
    return model


def _next_version(models_dir: Path, party_type: str, content: str, profile: str) -> Path:
    """The file for a new model: reuse an identical existing version, else the next number."""
    versions = []
    for path in models_dir.glob(f"{party_type}-v*.json"):
        match = MODEL_FILE.match(path.name)
        if not match:
            continue
        sidecar = profile_path(path)
        if (path.read_text(encoding="utf-8") == content and sidecar.is_file()
                and sidecar.read_text(encoding="utf-8") == profile):
            return path
        versions.append(int(match["version"]))
    return models_dir / f"{party_type}-v{max(versions, default=0) + 1}.json"


def profile_path(model_path: Path) -> Path:
    """The field profile stored beside a model (`person-v2.json` -> `person-v2.profile.json`)."""
    return model_path.with_name(model_path.stem + PROFILE_SUFFIX)


def report_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + REPORT_SUFFIX)


def load_labels(truth_dir: Path | None, overrides_path: Path | None) -> dict[str, Any] | None:
    """Ground truth (`truth/ground_truth.parquet`) and/or steward decisions, when given."""
    labels: dict[str, Any] = {}
    if truth_dir is not None:
        truth_file = Path(truth_dir) / "ground_truth.parquet"
        if not truth_file.is_file():
            raise TrainingError(f"no ground truth at {truth_file}")
        labels["truth"] = truth_file
    if overrides_path is not None and Path(overrides_path).is_file():
        from pipelines.identify.overrides import load_overrides

        decisions = [(o.source_record_id_l, o.source_record_id_r, o.decision)
                     for o in load_overrides(overrides_path)]
        if decisions:
            labels["decisions"] = decisions
    return labels or None


def train_models(records_path: Path, seed: int = 42, models_dir: Path = MODELS_DIR,
                 truth_dir: Path | None = None, overrides_path: Path | None = None,
                 expected_records: int | None = None,
                 backend: str | None = None) -> dict[str, Path]:
    """Train person and organization models; write `<party>-v<N>.json` with profile and report
    (estimation on `backend`, default the configured one: schemas/resolution.yaml `backend`).

    A party type without records is skipped (logged); raises TrainingError when neither trains.
    """
    from pipelines.resolve.report import write_report

    models_dir.mkdir(parents=True, exist_ok=True)
    labels = load_labels(truth_dir, overrides_path)
    written: dict[str, Path] = {}
    skipped: list[str] = []
    for party_type in PARTY_TYPES:
        try:
            trained = train_party_model(Path(records_path), party_type, seed, labels,
                                        expected_records, backend)
        except TrainingError as error:
            if "too few to learn from" not in str(error):
                raise
            skipped.append(str(error))
            continue
        content = json.dumps(trained.settings, indent=2, sort_keys=True) + "\n"
        profile = json.dumps(trained.profile, indent=2, sort_keys=True) + "\n"
        path = _next_version(models_dir, party_type, content, profile)
        path.write_text(content, encoding="utf-8")
        profile_path(path).write_text(profile, encoding="utf-8")
        write_report(report_path(path), trained)
        written[party_type] = path
        log.info("wrote %s model to %s", party_type, path)
    if not written:
        raise TrainingError(" ".join(skipped))
    for message in skipped:
        log.warning("%s", message)
    return written
