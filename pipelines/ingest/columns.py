"""SQL for a mapping's value references, shared by validate (length limits) and standardize.

A reference is a column name or a dotted path into a JSON object held in a column; a value
expression combines references (first non-blank, or joined), rewrites them with regular
expressions and maps listed values (`ValueExpr` in mapping.py). Every text value loses its
control and invisible format characters here, so no stage downstream sees a tab, CR, LF or NUL.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.ingest.mapping import ValueExpr
from pipelines.sql import quote_literal

# C0/C1 controls (tab, CR, LF, NUL, ...) and the invisible format characters that reorder or hide
# text (bidi overrides, zero-width joiners, BOM), and the Unicode line and paragraph separators
# (U+2028, U+2029) that end a line in JSON readers and editors: each run replaced by one space.
CONTROL_SQL = (r"'[\x00-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{2028}-\x{202e}\x{2060}-\x{2069}"
               r"\x{feff}]+'")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return quote_literal(value)


def raw_sql(path: str, columns: Sequence[str]) -> str:
    """The value a reference names, as written (NULL when an optional column is absent)."""
    if path in columns:
        return quote(path)
    root, _, rest = path.partition(".")
    if root not in columns:
        return "NULL::VARCHAR"
    json_path = "$." + ".".join(f'"{part}"' for part in rest.split("."))
    return (f"CASE WHEN json_valid({quote(root)}) THEN "
            f"json_extract_string({quote(root)}, {literal(json_path)}) END")


def column_sql(path: str | None, columns: Sequence[str]) -> str:
    """Cleaned text of a reference: control characters removed, trimmed, blank -> NULL."""
    if path is None:
        return "NULL::VARCHAR"
    raw = raw_sql(path, columns)
    if raw == "NULL::VARCHAR":
        return raw
    return clean_sql(raw)


def clean_sql(value: str) -> str:
    return f"NULLIF(trim(regexp_replace({value}, {CONTROL_SQL}, ' ', 'g')), '')"


def value_sql(expr: ValueExpr | None, columns: Sequence[str]) -> str:
    """Text of a value expression: combine, then rewrite, then map values; blank -> NULL."""
    if expr is None:
        return "NULL::VARCHAR"
    if expr.refs:
        parts = [column_sql(ref, columns) for ref in expr.refs]
        if len(parts) == 1:
            value = parts[0]
        elif expr.combine == "concat":
            value = f"NULLIF(concat_ws({literal(expr.separator)}, {', '.join(parts)}), '')"
        else:
            value = f"coalesce({', '.join(parts)})"
    else:
        value = f"CAST({literal(expr.constant)} AS VARCHAR)"
    for pattern, replacement in expr.rewrites:
        value = (f"NULLIF(trim(regexp_replace({value}, {literal(pattern)}, "
                 f"{literal(replacement)}, 'g')), '')")
    if expr.values:
        cases = " ".join(f"WHEN {literal(raw)} THEN CAST({literal(mapped)} AS VARCHAR)"
                         for raw, mapped in expr.values.items())
        value = f"CASE {value} {cases} ELSE {value} END"
    return value
