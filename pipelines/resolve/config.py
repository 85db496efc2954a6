"""Resolution settings from schemas/resolution.yaml: backend, model files, thresholds, training.

A configuration folder (UCV_CONFIG_DIR) may hold a `resolution.yaml` of its own: it is merged
over the project's, key by key, so it needs only what differs, typically the `models:` lines
that `ucv train` prints. Model paths are relative to the file that names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.settings import MODELS_DIR, RESOLUTION_FILE, SCHEMAS_DIR, merge_config

PROJECT_RESOLUTION_FILE = SCHEMAS_DIR / "resolution.yaml"

PARTY_TYPES = ("person", "organization")


@dataclass(frozen=True)
class Thresholds:
    """Match-weight cut-offs of one party type."""

    review_floor: float
    match: float


def _models_relative_to(path: Path) -> dict[str, Path]:
    """Each model file named in `path`'s `models:`, resolved against that file's folder."""
    models = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or {}
    return {party: (path.parent / name).resolve() for party, name in models.items()}


@lru_cache(maxsize=4)
def load_resolution_settings(path: Path = RESOLUTION_FILE) -> dict[str, Any]:
    """The parsed resolution.yaml, a configuration folder's merged over the project's (cached;
    it is configuration, not data). Model paths come out absolute."""
    settings = yaml.safe_load(PROJECT_RESOLUTION_FILE.read_text(encoding="utf-8"))
    models = _models_relative_to(PROJECT_RESOLUTION_FILE)
    if path.resolve() != PROJECT_RESOLUTION_FILE.resolve():
        settings = merge_config(settings, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        models.update(_models_relative_to(path))
    settings["models"] = {party: str(p) for party, p in models.items()}
    return settings


def thresholds(party_type: str) -> Thresholds:
    cfg = load_resolution_settings()["thresholds"][party_type]
    return Thresholds(review_floor=float(cfg["review_floor"]), match=float(cfg["match"]))


def model_paths() -> dict[str, Path]:
    """The model JSON each party type uses in nightly runs (as named in resolution.yaml)."""
    models = load_resolution_settings()["models"]
    return {party: Path(models[party]) for party in PARTY_TYPES}


def training_settings() -> dict[str, Any]:
    return dict(load_resolution_settings()["training"])


def model_fit_settings() -> dict[str, Any]:
    """How far tonight's fill rates may fall from the model's before a run warns or fails."""
    defaults = {"warn_drop": 0.10, "fail_drop": 0.30, "on_failure": "fail"}
    return {**defaults, **(load_resolution_settings().get("model_fit") or {})}


def cluster_evidence_settings() -> dict[str, Any]:
    """When a lone record joins a cluster on the cluster's union of evidence (cluster_evidence.py)."""
    defaults = {"enabled": True, "margin": 2.0, "max_cluster_size": 20, "party_types": ["person"]}
    return {**defaults, **(load_resolution_settings().get("cluster_evidence") or {})}


def cluster_conflict_settings() -> dict[str, Any]:
    """When links inside a cluster are cut because two of its records conflict
    (cluster_conflicts.py)."""
    defaults = {"enabled": True, "max_cluster_size": 50, "ambiguity_margin": 2.0,
                "max_weight": {"person": 12.0},
                "guards": ["birth_date_conflict", "national_id_conflict", "suffix_conflict",
                           "registration_conflict", "tax_id_conflict"]}
    return {**defaults, **(load_resolution_settings().get("cluster_conflicts") or {})}


def max_block_records() -> int:
    """Largest block a key shared by chance may make (features.CAPPED_KEYS)."""
    return int((load_resolution_settings().get("block_keys") or {}).get("max_block_records", 20))


def link_guards(party_type: str) -> list[dict[str, Any]]:
    return list((load_resolution_settings().get("link_guards") or {}).get(party_type) or [])


def backend_settings() -> tuple[str, dict[str, Any]]:
    cfg = load_resolution_settings()
    name = cfg["backend"]
    return name, dict(cfg.get(name) or {})


__all__ = ["MODELS_DIR", "PARTY_TYPES", "RESOLUTION_FILE", "Thresholds", "backend_settings", "cluster_evidence_settings", "link_guards", "load_resolution_settings", "max_block_records", "model_fit_settings",
           "model_paths", "thresholds", "training_settings"]
