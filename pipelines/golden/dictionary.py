"""The data dictionary: docs/data_dictionary.md generated from schemas/warehouse.yaml."""

from __future__ import annotations

from pathlib import Path

from pipelines.golden.config import (
    WAREHOUSE_SCHEMA_FILE,
    canonical_specs,
    load_yaml,
    survivorship_config,
    survivorship_groups,
)
from pipelines.settings import PROJECT_ROOT

DATA_DICTIONARY_FILE = PROJECT_ROOT / "docs" / "data_dictionary.md"


def canonical_docs() -> dict[str, str]:
    return {name: f"{spec.get('doc', name)} ({spec['type']})"
            for name, spec in canonical_specs().items()}


def golden_field_docs(with_source: bool) -> dict[str, str]:
    """Each golden field with its meaning and its survivorship group's rules."""
    docs = canonical_docs()
    columns: dict[str, str] = {}
    for group in survivorship_groups(survivorship_config()):
        rules = ", ".join(r if isinstance(r, str) else f"{k} {v}" for r in group.rules
                          for k, v in ([(r, "")] if isinstance(r, str) else r.items()))
        for field in group.fields:
            columns[field] = f"{docs[field]}; golden: group `{group.name}`, rules {rules}"
            if with_source:
                columns[f"{field}_source_record_id"] = f"source record the {field} value came from"
        for column, display in (group.display or {}).items():
            columns[column] = (f"display form for people and letters: `{display['value']}` as "
                               f"written, the best-written (mixed case, then diacritics or hanzi) "
                               f"among the records whose {display['same']} equals the winner's")
            if with_source:
                columns[f"{column}_source_record_id"] = f"source record the {column} value came from"
    return columns


def expanded_columns(spec: dict) -> dict[str, str]:
    """A table's documented columns, in order, with the `$` expansions applied."""
    columns: dict[str, str] = {}
    for entry in spec.get("columns") or []:
        for name, meaning in entry.items():
            if name == "$canonical_fields":
                columns.update(canonical_docs())
            elif name == "$golden_fields":
                columns.update(golden_field_docs(with_source=meaning == "with_source"))
            else:
                columns[name] = " ".join(str(meaning).split())
    return columns


def warehouse_schema(path: Path = WAREHOUSE_SCHEMA_FILE) -> dict[str, dict]:
    return load_yaml(path)["tables"]


def warehouse_views(path: Path = WAREHOUSE_SCHEMA_FILE) -> dict[str, dict]:
    return load_yaml(path).get("views") or {}


def data_dictionary_markdown(path: Path = WAREHOUSE_SCHEMA_FILE) -> str:
    """The data dictionary as Markdown: per table its grain, key, description and columns."""
    lines = [
        "# Data dictionary",
        "",
        "<!-- GENERATED from schemas/warehouse.yaml by `ucv data-dictionary`; do not edit. -->",
        "",
        "The published warehouse: DuckDB `data/warehouse/ucv.duckdb` (open it with `ucv sql`; any",
        "DuckDB 1.4 or newer reads it) and the Parquet mirror",
        "`data/warehouse/parquet/<version>/<table>.parquet` (one file per table, same columns),",
        "the current `<version>` named in `data/warehouse/parquet/LATEST`.",
        "",
        "What is kept, and for how long: the live warehouse until the next publish; the last 7",
        "nights of run folders, landed exports, dated marketing exports and Parquet mirror versions",
        "(`retention:` in schemas/identify.yaml); the ID registry `data/registry/ids.duckdb` (every",
        "customer ID ever published, its source records per publication, every ID event) forever.",
        "To erase a person (GDPR Art. 17): `ucv erase --email ... | --phone ... | --national-id ... |",
        "--customer-id ... | --source-record ...` removes them from all of these, and a tombstone keeps",
        "them out of every later night (docs/operations.md, *Retention and erasure*).",
        "",
        "| table | grain | key |",
        "|---|---|---|",
    ]
    tables = warehouse_schema(path)
    for name, spec in tables.items():
        lines.append(f"| [`{name}`](#{name}) | {spec['grain']} | {', '.join(spec['key'])} |")
    for name, spec in tables.items():
        lines += ["", f"## {name}", "", f"**Grain:** {spec['grain']}.  ",
                  f"**Key:** {', '.join(f'`{k}`' for k in spec['key'])}", "",
                  " ".join(spec.get("description", "").split()), "",
                  "| column | meaning |", "|---|---|"]
        for column, meaning in expanded_columns(spec).items():
            lines.append(f"| `{column}` | {markdown_cell(meaning)} |")
        if spec.get("other_columns"):
            lines += ["", f"Other columns: {' '.join(spec['other_columns'].split())}."]
    views = warehouse_views(path)
    if views:
        lines += ["", "# Views", "",
                  "The common questions, one SELECT each, in the DuckDB file (not in the Parquet "
                  "mirror).", "Relative dates use the export date of the published run.", "",
                  "| view | grain | key |", "|---|---|---|"]
        lines += [f"| [`{name}`](#{name}) | {spec['grain']} | {', '.join(spec['key'])} |"
                  for name, spec in views.items()]
    for name, spec in views.items():
        lines += ["", f"## {name}", "", f"**Grain:** {spec['grain']}.  ",
                  f"**Key:** {', '.join(f'`{k}`' for k in spec['key'])}", "",
                  " ".join(spec.get("description", "").split()), "",
                  "| column | meaning |", "|---|---|"]
        lines += [f"| `{column}` | {markdown_cell(meaning)} |"
                  for column, meaning in expanded_columns(spec).items()]
        lines += ["", "```sql", spec["sql"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def markdown_cell(text: str) -> str:
    return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")


def write_data_dictionary(path: Path = DATA_DICTIONARY_FILE) -> Path:
    """Regenerate docs/data_dictionary.md from schemas/warehouse.yaml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data_dictionary_markdown(), encoding="utf-8")
    return path
