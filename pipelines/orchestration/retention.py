"""Retention: keep the last N nights of run folders, landed exports, mirror versions and dated
marketing exports; delete older ones at the end of every successful run.

N per kind is in `schemas/identify.yaml` (`retention:`, default 7 each); `UCV_RETENTION_NIGHTS`
overrides all of them for one deployment. What is never deleted: the live warehouse, the Parquet
mirror version `current` points at, the ID registry (IDs must stay unique forever; it holds no
personal data beyond record keys), tombstones and erasure reports, and the folders of the run
that is finishing (even when it is an older date).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines import settings

DEFAULT_NIGHTS = 7
ENV_OVERRIDE = "UCV_RETENTION_NIGHTS"
DATE_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}$")
VERSION_NAME = re.compile(r"^(\d{6})-.+$")


@dataclass(frozen=True)
class RetentionConfig:
    """How many nights (dates; for the mirror, publications) of each kind are kept."""

    run_folders: int = DEFAULT_NIGHTS
    landing: int = DEFAULT_NIGHTS
    exports: int = DEFAULT_NIGHTS
    mirror_versions: int = DEFAULT_NIGHTS


def load_retention(identify_file: Path | None = None) -> RetentionConfig:
    """`retention:` of schemas/identify.yaml (a configuration folder's merged over it);
    UCV_RETENTION_NIGHTS overrides every kind."""
    from pipelines.identify.config import IDENTIFY_FILE, identify_settings

    path = identify_file or IDENTIFY_FILE
    section = identify_settings(identify_file).get("retention", {}) or {}
    if os.environ.get(ENV_OVERRIDE):
        nights = int(os.environ[ENV_OVERRIDE])
        section = dict.fromkeys(("run_folders", "landing", "exports", "mirror_versions"), nights)
    config = RetentionConfig(**{k: int(v) for k, v in section.items()
                                if k in RetentionConfig.__dataclass_fields__})
    if min(config.run_folders, config.landing, config.exports, config.mirror_versions) < 1:
        raise ValueError(f"{path}: retention keeps at least 1 of each kind: {config}")
    return config


def apply_retention(current_run_id: str | None = None,
                    config: RetentionConfig | None = None) -> dict[str, int]:
    """Delete what is older than the kept nights; returns how many folders of each kind went."""
    config = config or load_retention()
    root = settings.data_root()
    removed = {
        "run_folders": _keep_latest_dates(root / "runs", config.run_folders, current_run_id),
        "landing": _keep_latest_dates(settings.landing_root(), config.landing, current_run_id),
        "exports": _keep_latest_dates(settings.export_dir(), config.exports, current_run_id),
        "mirror_versions": prune_mirror_versions(settings.warehouse_dir() / "parquet",
                                                 config.mirror_versions),
    }
    return removed


def _keep_latest_dates(folder: Path, keep: int, current: str | None) -> int:
    """Remove dated sub-folders (YYYY-MM-DD) but the `keep` latest and the current run's."""
    if not folder.is_dir():
        return 0
    dated = sorted(p for p in folder.iterdir() if p.is_dir() and DATE_NAME.match(p.name))
    old = [p for p in dated[:-keep] if p.name != current]
    for path in old:
        shutil.rmtree(path)
    return len(old)


def prune_mirror_versions(mirror_root: Path, keep: int) -> int:
    """Remove all but the newest `keep` mirror versions; never the one `current` points at."""
    if not mirror_root.is_dir():
        return 0
    link = mirror_root / "current"
    current = link.resolve() if link.exists() else None
    versions = sorted((p for p in mirror_root.iterdir()
                       if p.is_dir() and not p.is_symlink() and VERSION_NAME.match(p.name)),
                      key=lambda p: int(VERSION_NAME.match(p.name).group(1)))  # type: ignore[union-attr]
    old = [p for p in versions[:-keep] if p.resolve() != current]
    for path in old:
        shutil.rmtree(path)
    return len(old)
