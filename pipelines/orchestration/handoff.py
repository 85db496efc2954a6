"""The morning hand-off of the marketing export: what a downstream DAG checks before it sends
the file on. Reads the manifest the export wrote; never opens the customer rows themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class HandoffRefused(RuntimeError):
    """The export named by the Asset event is missing or does not match its manifest."""


def check_marketing_export(event_extra: dict[str, Any]) -> dict[str, Any]:
    """Check the export an Asset event announced: files present, row counts equal the manifest's."""
    manifest_path = Path(str(event_extra.get("manifest", "")))
    if not manifest_path.is_file():
        raise HandoffRefused(f"run {event_extra.get('run_id')}: no manifest at {manifest_path}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    files = manifest.get("files", {})
    missing = [name for name in files if not (manifest_path.parent / name).is_file()]
    if missing:
        raise HandoffRefused(f"{manifest_path}: files listed but absent: {', '.join(missing)}")
    # the snapshot files hold the exported customers; delta and suppression files count changes
    rows = {name: spec.get("rows") for name, spec in files.items()
            if name.startswith("marketing_customers_")}
    if event_extra.get("rows") is not None and any(r != event_extra["rows"] for r in rows.values()):
        raise HandoffRefused(f"{manifest_path}: rows {rows} differ from the published "
                             f"{event_extra['rows']}")
    return {"run_id": event_extra.get("run_id"), "folder": str(manifest_path.parent),
            "files": sorted(files), "rows": manifest.get("row_count")}
