"""`ucv train`: fit one Splink model per party type and write it as versioned JSON.

u by seeded random sampling, m by EM over a few blocking rules, the prior from deterministic
rules. Parameters are rounded before saving so the same data and seed give the same bytes.
Nightly runs only load these files (see predict.py); training is never a side effect.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from pipelines.resolve.backend import database_api, duckdb_connection
from pipelines.resolve.config import PARTY_TYPES, training_settings
from pipelines.resolve.features import create_comparison_table
from pipelines.resolve.model import (
    deterministic_rules,
    em_training_rules,
    settings_for,
)
from pipelines.settings import MODELS_DIR

log = logging.getLogger(__name__)
MODEL_FILE = re.compile(r"^(?P<party>[a-z]+)-v(?P<version>\d+)\.json$")


def _round_floats(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v, digits) for v in value]
    return value


def train_party_model(records_path: Path, party_type: str, seed: int) -> dict[str, Any]:
    """Train one party type's model on canonical source records; returns the Splink settings dict."""
    from splink import Linker

    cfg = training_settings()
    db_api = database_api("duckdb")
    table = f"train_{party_type}"
    n = create_comparison_table(duckdb_connection(db_api), records_path, party_type, table)
    if n < 2:
        raise ValueError(f"{records_path} has {n} {party_type} records: too few to train on")
    linker = Linker(db_api.register(table), settings_for(party_type),
                    log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        deterministic_rules(party_type), recall=float(cfg["deterministic_rules_recall"]))
    linker.training.estimate_u_using_random_sampling(
        max_pairs=float(cfg["u_max_pairs"]), seed=seed, min_count_per_level=None, num_chunks=1)
    for rule in em_training_rules(party_type):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True)
    model = linker.misc.save_model_to_json()
    model = apply_parameter_rules(model, float(cfg["unobserved_else_weight"]),
                                  (cfg.get("max_level_weight") or {}).get(party_type) or {})
    return _round_floats(model, int(cfg["round_digits"]))


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
            cap = caps.get(level["label_for_charts"])
            m, u = level.get("m_probability"), level.get("u_probability")
            if cap is not None and m and (u is None or math.log2(m / u) > cap):
                level["u_probability"] = m / 2**cap
    return model


def _next_version(models_dir: Path, party_type: str, content: str) -> Path:
    """The file for a new model: reuse an identical existing version, else the next number."""
    versions = []
    for path in models_dir.glob(f"{party_type}-v*.json"):
        match = MODEL_FILE.match(path.name)
        if not match:
            continue
        if path.read_text(encoding="utf-8") == content:
            return path
        versions.append(int(match["version"]))
    return models_dir / f"{party_type}-v{max(versions, default=0) + 1}.json"


def train_models(records_path: Path, seed: int = 42,
                 models_dir: Path = MODELS_DIR) -> dict[str, Path]:
    """Train person and organization models; write `<party>-v<N>.json` files; return their paths."""
    models_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for party_type in PARTY_TYPES:
        model = train_party_model(Path(records_path), party_type, seed)
        content = json.dumps(model, indent=2, sort_keys=True) + "\n"
        path = _next_version(models_dir, party_type, content)
        path.write_text(content, encoding="utf-8")
        written[party_type] = path
        log.info("wrote %s model to %s", party_type, path)
    return written
