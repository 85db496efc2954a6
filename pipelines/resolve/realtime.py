"""Score new records against stored ones with the trained model (for real-time resolution).

`load_linker(party_type, records)` loads the nightly model over the stored canonical records
(with their term frequencies); `PartyLinker.match(new_records)` returns scored candidate pairs
found by the model's own blocking rules, via Splink's `predict_between`. `compile_scorer(model)`
splits Splink's scoring for one record at a time: levels by Splink's SQL, weights in Python.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.resolve.backend import database_api, duckdb_connection
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.model import tf_columns
from pipelines.resolve.predict import load_model, load_training_profile, scale_prior
from pipelines.sql import quote_ident


@dataclass
class PartyLinker:
    """A trained Splink linker over stored records of one party type."""

    party_type: str
    linker: Any
    db_api: Any
    stored: Any  # SplinkDataFrame of the stored records
    model: dict[str, Any]  # the Splink settings in use (prior rescaled to the stored records)
    _batches: int = 0

    def prepare(self, records) -> Any:
        """Register canonical records (DataFrame or parquet path) in the model's input shape."""
        self._batches += 1
        return _register_comparison_table(self.db_api, records, self.party_type,
                                          f"new_{self.party_type}_{self._batches}")

    def match(self, records, threshold_match_weight: float | None = None):
        """Scored pairs (stored `_l`, new `_r`) between stored and new records, best first."""
        new = self.prepare(records)
        predictions = self.linker.inference.predict_between(
            self.stored, new, threshold_match_weight=threshold_match_weight,
            warning_mode="never")
        frame = predictions.as_pandas_dataframe()
        return frame.sort_values("match_weight", ascending=False, ignore_index=True)

    def score(self, left_records, right_records):
        """Score every left x right pair (no blocking) with Splink's `score_pairs`."""
        left, right = self.prepare(left_records), self.prepare(right_records)
        return self.linker.inference.score_pairs(left, right).as_pandas_dataframe()


def _register_comparison_table(db_api, records, party_type: str, table: str):
    con = duckdb_connection(db_api)
    source: Path | str
    if isinstance(records, (str, Path)):
        source = Path(records)
    else:
        con.register(f"{table}_canonical", records)
        source = f"{table}_canonical"
    create_comparison_table(con, source, party_type, table)
    return db_api.register(table)


def load_linker(party_type: str, records, models: dict | None = None) -> PartyLinker:
    """The trained model of `party_type` over stored canonical records (DataFrame or parquet)."""
    from splink import Linker

    db_api = database_api("duckdb")
    stored = _register_comparison_table(db_api, records, party_type, f"stored_{party_type}")
    n_stored = duckdb_connection(db_api).execute(
        f"SELECT count(*) FROM stored_{party_type}").fetchall()[0][0]
    model = scale_prior(load_model(party_type, models), load_training_profile(party_type, models),
                        n_stored)
    linker = Linker(stored, model, log_level=logging.WARNING)
    for column in tf_columns(model):
        linker.table_management.compute_tf_table(column)
    return PartyLinker(party_type, linker, db_api, stored, model)


@dataclass(frozen=True)
class _TermFrequency:
    """One comparison level's term-frequency adjustment, as Splink's `_tf_adjustment_sql` has it."""

    left: str  # tf column of the stored record, e.g. tf_city_l
    right: str
    weight: float
    log2_u_exact: float
    min_u: float


@dataclass(frozen=True)
class _Comparison:
    gamma: str  # Splink's column names: gamma_<name>, mw_<name>, mw_tf_adj_<name>
    mw: str
    mw_tf_adj: str
    match_weight: dict[int, float]  # gamma level -> match weight
    tf: dict[int, _TermFrequency] | None  # levels with a term-frequency adjustment; None: no tf column


@dataclass(frozen=True)
class CompiledScorer:
    """Splink's scoring of one model, split where the cost is: comparison levels (gamma) by Splink's
    own SQL, run as one prepared statement; match weights from those levels in Python.

    A DuckDB statement costs in proportion to its expression count whatever the row count (parse
    and bind), and Splink's match-weight stage repeats every term in match_weight and
    match_probability: ~70 ms per query for a handful of rows. The weights are a table look-up
    per level plus the term-frequency formula, computed here with the numbers Splink writes into
    its SQL (`_match_weight`, `_tf_adjustment_weight`, log2 of the exact level's u); the real-time
    scorer checks at start-up that they equal Splink's scores and falls back to Splink's SQL if not.
    """

    prior_weight: float
    comparisons: tuple[_Comparison, ...]
    blocking_columns: str  # Splink's select list of the blocked pairs (l./r. columns as *_l/*_r)
    comparison_columns: str  # Splink's select list of the comparison vectors (gamma_* CASEs)
    gamma_columns: tuple[str, ...]
    tf_columns: tuple[str, ...]  # *_l / *_r tf columns the weights read

    def gamma_sql(self, left: str, right: str, join_condition: str, keep: tuple[str, ...] = ()) -> str:
        """Pairs of `left` x `right` meeting `join_condition`: unique_id_l, the gamma_* and tf
        columns, and the `keep` columns of `left` (as <name>_l)."""
        kept = [f"{quote_ident(k + '_l')}" for k in keep]
        blocked_keep = "".join(f", l.{quote_ident(k)} AS {q}" for k, q in zip(keep, kept, strict=True))
        out = ", ".join(["unique_id_l", *self.gamma_columns, *self.tf_columns, *kept])
        return (f"WITH __splink__compare_two_records_blocked AS (SELECT {self.blocking_columns}{blocked_keep}, "
                f"0 AS match_key FROM {left} AS l JOIN {right} AS r ON {join_condition}), "
                f"__splink__df_comparison_vectors AS (SELECT {self.comparison_columns}"
                f"{''.join(', ' + q for q in kept)} FROM __splink__compare_two_records_blocked) "
                f"SELECT {out} FROM __splink__df_comparison_vectors")

    def weigh(self, pair: dict[str, Any]) -> dict[str, Any]:
        """`pair` (gamma_* and tf columns) with mw_*, mw_tf_adj_*, match_weight and
        match_probability added, summed in the order of Splink's SQL."""
        total = self.prior_weight
        for comparison in self.comparisons:
            gamma = pair[comparison.gamma]
            weight = comparison.match_weight[gamma]
            pair[comparison.mw] = weight
            total = total + weight
            if comparison.tf is not None:
                adjust = 0.0
                tf = comparison.tf.get(gamma)
                if tf is not None:
                    left, right = pair[tf.left], pair[tf.right]
                    if left is not None or right is not None:
                        value = max(right if left is None else left, left if right is None else right, tf.min_u)
                        adjust = tf.weight * (tf.log2_u_exact - (math.log2(value) if value > 0 else -math.inf))
                pair[comparison.mw_tf_adj] = adjust
                total = total + adjust
        pair["match_weight"] = total
        pair["match_probability"] = (1.0 / (1.0 + 2.0 ** (-total)) if total >= 0
                                     else 2.0 ** total / (1.0 + 2.0 ** total))
        return pair


def compile_scorer(model: dict[str, Any]) -> CompiledScorer:
    """The `CompiledScorer` of a Splink model (settings dict), from Splink's own settings objects."""
    from splink.internals.misc import prob_to_match_weight
    from splink.internals.settings_creator import SettingsCreator

    settings = SettingsCreator.from_path_or_dict(model).get_settings("duckdb")
    # only the levels and the tf columns are read: no matching columns (each costs binding)
    settings._retain_matching_columns = False
    settings._retain_intermediate_calculation_columns = False
    comparisons, tf_columns = [], []
    for comparison in settings.core_model_settings.comparisons:
        levels = comparison.comparison_levels
        weights = {cl.comparison_vector_value: float(cl._match_weight) for cl in levels}
        tf: dict[int, _TermFrequency] | None = None
        if comparison._has_tf_adjustments:
            tf = {}
            for cl in levels:
                if (cl.comparison_vector_value == -1 or not cl._has_tf_adjustments
                        or cl._tf_adjustment_weight == 0 or cl._is_else_level):
                    continue
                column = cl._tf_adjustment_input_column
                left, right = (n.strip('"') for n in (column.tf_name_l, column.tf_name_r))
                tf[cl.comparison_vector_value] = _TermFrequency(
                    left, right, float(cl._tf_adjustment_weight),
                    math.log2(cl._u_probability_corresponding_to_exact_match(levels)),
                    float(cl._tf_minimum_u_value))
                tf_columns += [n for n in (column.tf_name_l, column.tf_name_r) if n not in tf_columns]
        comparisons.append(_Comparison(comparison._gamma_column_name, comparison._mw_column_name,
                                       comparison._mw_tf_adj_column_name, weights, tf))
    return CompiledScorer(
        prior_weight=prob_to_match_weight(settings.core_model_settings.probability_two_random_records_match),
        comparisons=tuple(comparisons),
        blocking_columns=", ".join(settings._columns_to_select_for_blocking),
        comparison_columns=", ".join(settings._columns_to_select_for_comparison_vector_values),
        gamma_columns=tuple(c.gamma for c in comparisons),
        tf_columns=tuple(tf_columns))
