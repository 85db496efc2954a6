"""Thresholds the identify stage uses. The match and review-floor match weights belong to the resolve
stage (`schemas/resolution.yaml`, one source of truth); review settings are in `schemas/identify.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pipelines.settings import SCHEMAS_DIR, layered_config

IDENTIFY_FILE = SCHEMAS_DIR / "identify.yaml"
PARTY_TYPES = ("person", "organization")


@dataclass(frozen=True)
class IdentifyConfig:
    """Per party type, in Splink match weights: pairs at or above `match_weight` link, pairs from
    `review_floor` up to it are queued for stewards."""

    match_weight: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTY_TYPES, 6.0))
    review_floor: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTY_TYPES, -2.0))
    min_density: float = 0.4
    max_review_rows: int = 50000

    def threshold_frame(self) -> pd.DataFrame:
        party_types = sorted(set(self.match_weight) | set(self.review_floor))
        return pd.DataFrame({
            "party_type": party_types,
            "match_threshold": [float(self.match_weight[p]) for p in party_types],
            "review_floor": [float(self.review_floor[p]) for p in party_types],
        })


def identify_settings(identify_file: Path | None = None) -> dict:
    """identify.yaml: the project's with a configuration folder's merged over it, or `identify_file`."""
    if identify_file is None:
        return layered_config("identify.yaml")
    return (yaml.safe_load(identify_file.read_text(encoding="utf-8")) or {}
            if identify_file.exists() else {})


def load_config(identify_file: Path | None = None) -> IdentifyConfig:
    """Thresholds from the resolve stage's settings, review settings from identify.yaml."""
    from pipelines.resolve.config import thresholds

    cuts = {p: thresholds(p) for p in PARTY_TYPES}
    review = identify_settings(identify_file).get("review", {}) or {}
    defaults = IdentifyConfig()
    return IdentifyConfig(
        match_weight={p: c.match for p, c in cuts.items()},
        review_floor={p: c.review_floor for p, c in cuts.items()},
        min_density=float(review.get("min_density", defaults.min_density)),
        max_review_rows=int(review.get("max_rows", defaults.max_review_rows)),
    )
