"""Every path the pipeline uses, built from the project root, and the per-run folder layout.

Configuration is data: thresholds and rules live in YAML under `schemas/`; this module only says
where things are. Set UCV_HOME to run against another data root (tests use a temporary folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"


def _config_dir() -> Path | None:
    value = os.environ.get("UCV_CONFIG_DIR")
    return Path(value).resolve() if value else None


# UCV_CONFIG_DIR names a folder that overlays the project's own configuration for one insurer (or
# one generator profile): its `sources/`, `expectations/`, `models/` and `operations.yaml` are used
# where they exist, the project's otherwise; its `resolution.yaml`, `survivorship.yaml` and
# `identify.yaml` hold only what it changes and are merged over the project's (`layered_config`).
# Read once at import: a process serves one deployment.
CONFIG_DIR = _config_dir()


def _overlay(relative: str, default: Path) -> Path:
    if CONFIG_DIR is not None and (CONFIG_DIR / relative).exists():
        return CONFIG_DIR / relative
    return default


def merge_config(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`: mappings merge key by key, a key set to null is removed, anything
    else (a list, a value) replaces the base's."""
    merged = dict(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def layered_config(name: str) -> dict[str, Any]:
    """schemas/<name> with the configuration folder's own <name>, if it has one, merged over it:
    an insurer's folder holds only what it changes (e.g. one survivorship group's rules)."""
    config = yaml.safe_load((SCHEMAS_DIR / name).read_text(encoding="utf-8")) or {}
    own = CONFIG_DIR / name if CONFIG_DIR is not None else None
    if own is not None and own.is_file():
        config = merge_config(config, yaml.safe_load(own.read_text(encoding="utf-8")) or {})
    return config


SOURCES_DIR = _overlay("sources", SCHEMAS_DIR / "sources")
EXPECTATIONS_DIR = _overlay("expectations", PROJECT_ROOT / "expectations")
RESOLUTION_FILE = _overlay("resolution.yaml", SCHEMAS_DIR / "resolution.yaml")
OPERATIONS_FILE = _overlay("operations.yaml", SCHEMAS_DIR / "operations.yaml")
# `ucv train` writes here; with a config folder, always inside it (never into the project's models)
MODELS_DIR = CONFIG_DIR / "models" if CONFIG_DIR is not None else SCHEMAS_DIR / "models"
OVERRIDES_DIR = PROJECT_ROOT / "stewardship"
CANONICAL_SCHEMA_FILE = SCHEMAS_DIR / "canonical.yaml"


def data_root() -> Path:
    """Root of all generated data (landing, runs, warehouse, export); UCV_HOME overrides it."""
    return Path(os.environ.get("UCV_HOME", PROJECT_ROOT / "data")).resolve()


def landing_root() -> Path:
    return data_root() / "landing"


def warehouse_dir() -> Path:
    return data_root() / "warehouse"


def warehouse_file() -> Path:
    return warehouse_dir() / "ucv.duckdb"


def export_dir() -> Path:
    return data_root() / "export"


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run: raw -> accepted/quarantine -> staged -> resolved -> identified -> golden.

    Everything a run writes lives under `data/runs/<run_id>/`, so rerunning a logical date replaces
    only that run's own outputs.
    """

    run_id: str
    root: Path

    @classmethod
    def for_run(cls, run_id: str, base: Path | None = None) -> RunPaths:
        return cls(run_id=run_id, root=(base or data_root() / "runs") / run_id)

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def accepted_dir(self) -> Path:
        return self.root / "accepted"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def staged_dir(self) -> Path:
        return self.root / "staged"

    @property
    def resolved_dir(self) -> Path:
        return self.root / "resolved"

    @property
    def identified_dir(self) -> Path:
        return self.root / "identified"

    @property
    def golden_dir(self) -> Path:
        return self.root / "golden"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def ensure(self) -> RunPaths:
        for d in (self.raw_dir, self.accepted_dir, self.quarantine_dir, self.staged_dir,
                  self.resolved_dir, self.identified_dir, self.golden_dir, self.report_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def duckdb_config() -> dict[str, str | bool | int | float | list[str]]:
    """Settings for the pipeline's own DuckDB connections, so a stage spills to disk rather than
    growing without bound (DuckDB's default is 80% of RAM). Splink's connection takes its limits
    from schemas/resolution.yaml. UCV_DUCKDB_MEMORY_LIMIT overrides the limit (e.g. '8GB')."""
    spill = data_root() / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    return {"memory_limit": os.environ.get("UCV_DUCKDB_MEMORY_LIMIT", "3GB"),
            "temp_directory": str(spill)}
