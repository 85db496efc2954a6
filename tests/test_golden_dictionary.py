"""The data dictionary is generated from schemas/warehouse.yaml, is up to date, and documents
exactly the columns the published tables have."""

from __future__ import annotations

import re
from datetime import date

import duckdb

from pipelines.golden import build_golden, publish_warehouse
from pipelines.golden.dictionary import (
    DATA_DICTIONARY_FILE,
    data_dictionary_markdown,
    expanded_columns,
    warehouse_schema,
    warehouse_views,
)
from pipelines.golden.publish import WAREHOUSE_TABLES
from pipelines.golden.testing import small_portfolio, write_identify_extras
from pipelines.settings import RunPaths


def test_docs_data_dictionary_is_up_to_date():
    assert DATA_DICTIONARY_FILE.read_text(encoding="utf-8") == data_dictionary_markdown(), (
        "docs/data_dictionary.md is stale: run `ucv data-dictionary`")


def test_schema_names_the_design_tables_with_grain_and_key():
    schema = warehouse_schema()
    assert tuple(schema) == WAREHOUSE_TABLES
    for name, spec in schema.items():
        assert spec["grain"].startswith("one row per"), name
        assert set(spec["key"]) <= set(expanded_columns(spec)), name


def test_published_columns_are_exactly_the_documented_ones(tmp_path):
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=tmp_path / "runs"))
    write_identify_extras(run, history=[{"run_id": "2026-11-22", "event": "new",
                                         "customer_id": "C1", "related_customer_id": None}])
    build_golden(run, date(2026, 11, 22))
    path = publish_warehouse(run, tmp_path / "wh")
    with duckdb.connect(str(path), read_only=True) as con:
        for table, spec in warehouse_schema().items():
            actual = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            documented = list(expanded_columns(spec))
            undocumented = [c for c in actual if c not in documented and not re.fullmatch(
                spec.get("other_columns_pattern", "(?!)"), c)]
            assert undocumented == [], table
            # golden tables are fully ours: documented in table order, nothing missing
            if table in ("source_records", "customers", "customer_policy_links", "customer_360",
                         "runs"):
                assert actual == documented, table
        for view, spec in warehouse_views().items():
            actual = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
            assert actual == list(expanded_columns(spec)), view
        views = {r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert views == set(warehouse_views())
