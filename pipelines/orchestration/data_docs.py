"""Great Expectations Data Docs of the suites every source is validated with, kept and linked.

The pages describe the rules (expectation suites), not the rows: validation outcomes carry
unexpected values, i.e. personal data, so the run report shows them as counts per source and
rule instead. The docs are built once per version of the suites, into
`data/data_docs/<suites hash>/`, and every run report links the version it was validated with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from pipelines import settings

DATA_DOCS_DIR = "data_docs"


def suites_by_source() -> dict[str, dict]:
    """Each configured source's suite (JSON), as validation reads it."""
    from pipelines.ingest import load_mappings

    return {name: mapping.suite() for name, mapping in sorted(load_mappings().items())}


def data_docs_for(suites: dict[str, dict], root: Path | None = None) -> Path:
    """index.html of the Data Docs for these suites; built only if this version is missing."""
    digest = hashlib.sha256(json.dumps(suites, sort_keys=True).encode()).hexdigest()[:12]
    folder = (root or settings.data_root() / DATA_DOCS_DIR) / digest
    index = folder / "index.html"
    if index.is_file():
        return index
    tmp = folder.with_name(f".{digest}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _build(suites, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return index


def _build(suites: dict[str, dict], folder: Path) -> None:
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(site_name="ucv", site_config={
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(folder)}})
    for source, doc in suites.items():
        suite = ExpectationSuite(name=f"{source}_rows", meta=doc.get("meta") or {})
        for exp in doc.get("expectations", []):
            suite.add_expectation_configuration(ExpectationConfiguration(
                type=exp["type"], kwargs=exp.get("kwargs") or {}, meta=exp.get("meta") or {}))
        context.suites.add(suite)
    context.build_data_docs(site_names=["ucv"])


def link_data_docs(report_dir: Path) -> Path | None:
    """Build (or reuse) the Data Docs and leave report/data_docs.html pointing at them; never
    fails the report (the docs are a convenience, the figures are in the report itself)."""
    import logging

    try:
        index = data_docs_for(suites_by_source())
    except Exception as exc:  # GE missing or a suite it cannot render: say so, carry on
        logging.getLogger("ucv.stage").warning("Data Docs not built: %s: %s",
                                               type(exc).__name__, exc)
        return None
    target = os.path.relpath(index, report_dir)
    page = report_dir / "data_docs.html"
    page.write_text(f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" '
                    f'content="0; url={target}"><a href="{target}">Great Expectations Data '
                    f"Docs</a>\n", encoding="utf-8")
    return page
