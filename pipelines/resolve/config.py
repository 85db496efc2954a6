"""Resolution settings from schemas/resolution.yaml: backend, model files, thresholds, training."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.settings import MODELS_DIR, RESOLUTION_FILE

PARTY_TYPES = ("person", "organization")


@dataclass(frozen=True)
class Thresholds:
    """Match-weight cut-offs of one party type."""

    review_floor: float
    match: float


@lru_cache(maxsize=4)
def load_resolution_settings(path: Path = RESOLUTION_FILE) -> dict[str, Any]:
    """The parsed resolution.yaml (cached; it is configuration, not data)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def thresholds(party_type: str) -> Thresholds:
    cfg = load_resolution_settings()["thresholds"][party_type]
    return Thresholds(review_floor=float(cfg["review_floor"]), match=float(cfg["match"]))


def model_paths() -> dict[str, Path]:
    """The model JSON each party type uses in nightly runs (paths relative to resolution.yaml)."""
    models = load_resolution_settings()["models"]
    return {party: RESOLUTION_FILE.parent / models[party] for party in PARTY_TYPES}


def training_settings() -> dict[str, Any]:
    return dict(load_resolution_settings()["training"])


def model_fit_settings() -> dict[str, Any]:
    """How far tonight's fill rates may fall from the model's before a run warns or fails."""
    defaults = {"warn_drop": 0.10, "fail_drop": 0.30, "on_failure": "fail"}
    return {**defaults, **(load_resolution_settings().get("model_fit") or {})}


def link_guards(party_type: str) -> list[dict[str, Any]]:
    return list((load_resolution_settings().get("link_guards") or {}).get(party_type) or [])


def backend_settings() -> tuple[str, dict[str, Any]]:
    cfg = load_resolution_settings()
    name = cfg["backend"]
    return name, dict(cfg.get(name) or {})


__all__ = ["MODELS_DIR", "PARTY_TYPES", "RESOLUTION_FILE", "Thresholds", "backend_settings", "link_guards", "load_resolution_settings", "model_fit_settings",
           "model_paths", "thresholds", "training_settings"]
