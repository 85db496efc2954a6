"""Field profile of a party type's comparison table, and whether tonight's data still fits a model.

The profile (fill rate and distinct share per field, fill rate per source) is what `ucv train`
builds a model from (model.py) and what it stores beside the model; a nightly resolve profiles its
own records the same way and compares (resolution.yaml `model_fit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# columns of the comparison table that are not evidence
NOT_PROFILED = {"unique_id", "source_system", "given_name_first"}
DIGITS = 4


def _filled(column: str, column_type: str) -> str:
    """SQL that is true when the column carries a value (an empty list carries none)."""
    return f"len({column}) > 0" if column_type.endswith("[]") else f"{column} IS NOT NULL"


def field_profile(con, table: str, party_type: str, distinct: bool = True) -> dict[str, Any]:
    """Fill rate and distinct share per field, overall and fill rate per source, in DuckDB SQL.

    `distinct=False` skips the distinct counts (the nightly fit check needs only fill rates).
    """
    columns = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()
               if r[0] not in NOT_PROFILED]
    filled = [f"count(*) FILTER (WHERE {_filled(c, t)})" for c, t in columns]
    distincts = [f"count(DISTINCT {c}) FILTER (WHERE {_filled(c, t)})" for c, t in columns]
    total, *counts = con.execute(
        f"SELECT count(*), {', '.join(filled + (distincts if distinct else []))} FROM {table}"
    ).fetchall()[0]
    fields: dict[str, dict[str, float]] = {}
    for i, (column, _) in enumerate(columns):
        n_filled = counts[i]
        entry = {"fill_rate": round(n_filled / total, DIGITS) if total else 0.0,
                 "filled": int(n_filled)}
        if distinct:
            n_distinct = counts[len(columns) + i]
            entry["distinct_share"] = round(n_distinct / n_filled, DIGITS) if n_filled else 0.0
        fields[column] = entry
    by_source: dict[str, Any] = {}
    has_source = any(r[0] == "source_system" for r in con.execute(f"DESCRIBE {table}").fetchall())
    if has_source and total:
        rows = con.execute(
            f"SELECT coalesce(source_system, '(none)'), count(*), {', '.join(filled)} "
            f"FROM {table} GROUP BY 1 ORDER BY 1").fetchall()
        for source, n, *source_counts in rows:
            by_source[source] = {
                "records": int(n),
                "fill_rate": {c: round(k / n, DIGITS) for (c, _), k in zip(columns, source_counts,
                                                                         strict=True)}}
    return {"party_type": party_type, "records": int(total), "fields": fields,
            "by_source": by_source}


def fill_rate(profile: dict[str, Any], column: str) -> float:
    return float(profile["fields"].get(column, {}).get("fill_rate", 0.0))


@dataclass
class ModelFit:
    """How tonight's data fits the model: problems that fail the run, and warnings."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"failures": self.failures, "warnings": self.warnings}


def model_fit(trained: dict[str, Any], tonight: dict[str, Any], used_fields: list[str],
              warn_drop: float, fail_drop: float, min_fill_rate: float) -> ModelFit:
    """Compare fill rates of the fields a model uses, overall and per source present in both.

    A drop in fill rate (absolute) above `fail_drop` fails; above `warn_drop` warns. A field the
    model left out that is now populated, and sources that came or went, are warnings (retrain).
    """
    fit = ModelFit()

    def check(scope: str, before: float, now: float, column: str) -> None:
        drop = before - now
        text = (f"{column}{scope}: filled on {now:.1%} of records tonight, {before:.1%} when the "
                f"model was trained")
        if drop > fail_drop:
            fit.failures.append(text)
        elif drop > warn_drop:
            fit.warnings.append(text)

    for column in used_fields:
        check("", fill_rate(trained, column), fill_rate(tonight, column), column)
        for source, entry in sorted(trained.get("by_source", {}).items()):
            now = tonight.get("by_source", {}).get(source)
            if now is None:
                continue
            check(f" (source {source})", float(entry["fill_rate"].get(column, 0.0)),
                  float(now["fill_rate"].get(column, 0.0)), column)
    for column in sorted(set(tonight["fields"]) - set(used_fields)):
        if fill_rate(tonight, column) >= min_fill_rate > fill_rate(trained, column):
            fit.warnings.append(f"{column}: filled on {fill_rate(tonight, column):.1%} of records "
                                "tonight but not used by the model (retrain with `ucv train`)")
    trained_sources, tonight_sources = set(trained.get("by_source", {})), set(
        tonight.get("by_source", {}))
    for source in sorted(trained_sources - tonight_sources):
        fit.warnings.append(f"source {source} sent no records tonight")
    for source in sorted(tonight_sources - trained_sources):
        fit.warnings.append(f"source {source} was not in the training data")
    return fit
