"""Score new records against stored ones with the trained model (for real-time resolution).

`load_linker(party_type, records)` loads the nightly model over the stored canonical records
(with their term frequencies); `PartyLinker.match(new_records)` returns scored candidate pairs
found by the model's own blocking rules, via Splink's `predict_between`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.resolve.backend import database_api, duckdb_connection
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.model import tf_columns
from pipelines.resolve.predict import load_model, load_training_profile, scale_prior


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
