"""The training report: one offline HTML file beside each model, to judge the model by.

Field profile, comparisons left out and why, blocking rules with their comparison counts, EM
passes, m/u and weight per level, Splink's match-weight, m/u and parameter-estimate charts, and
precision/recall at the configured thresholds when labels exist. It shows parameters and counts
only, never a record or a sample pair (the folder is under version control).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from pipelines.resolve.config import link_guards, thresholds


def chart_specs(linker) -> dict[str, dict[str, Any]]:
    """Vega-Lite specs of Splink's model charts (parameters only, no records)."""
    specs = {"Match weights per level": linker.visualisations.match_weights_chart().chart_dict,
             "m and u per level": linker.visualisations.m_u_parameters_chart().chart_dict}
    try:
        specs["Parameter estimates per training pass"] = (
            linker.visualisations.parameter_estimate_comparisons_chart().chart_dict)
    except Exception:  # noqa: BLE001 - a chart Splink cannot draw leaves the report without it
        pass
    return specs


def _guarded_links_sql(model: dict[str, Any], party_type: str, predictions: str,
                       match: float) -> str:
    from pipelines.resolve.predict import blocked_by_sql

    blocked, _ = blocked_by_sql(model, party_type)
    return (f"SELECT unique_id_l, unique_id_r, match_weight, "
            f"match_weight >= {float(match)} AND ({blocked}) IS NULL AS is_link FROM {predictions}")


def label_metrics(db_api, table: str, model: dict[str, Any], party_type: str,
                  labels: dict[str, Any]) -> dict[str, Any]:
    """Pairwise precision/recall of the model's links (match threshold, link guards applied)
    against ground truth, and agreement with steward decisions, over the training records."""
    import logging

    from splink import Linker

    con = db_api.duckdb_con
    cut = thresholds(party_type)
    linker = Linker(db_api.register(table), model, log_level=logging.WARNING)
    predictions = linker.inference.predict(threshold_match_weight=cut.review_floor,
                                           warning_mode="never")
    con.execute(f"CREATE OR REPLACE TABLE label_links AS "
                f"{_guarded_links_sql(model, party_type, predictions.physical_name, cut.match)}")
    result: dict[str, Any] = {"match_threshold": cut.match}
    if "truth" in labels:
        con.execute("CREATE OR REPLACE TABLE label_truth AS SELECT t.source_record_id AS uid, "
                    "t.entity_id FROM read_parquet(?) t JOIN "
                    f"{table} r ON r.unique_id = t.source_record_id", [str(labels["truth"])])
        true_pairs, links, true_links = con.execute("""
            SELECT (SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM
                        (SELECT count(*) AS k FROM label_truth GROUP BY entity_id)),
                   count(*) FILTER (WHERE is_link),
                   count(*) FILTER (WHERE is_link AND a.entity_id = b.entity_id)
            FROM label_links p
            JOIN label_truth a ON a.uid = p.unique_id_l
            JOIN label_truth b ON b.uid = p.unique_id_r""").fetchall()[0]
        result["ground_truth"] = {
            "true_pairs": int(true_pairs), "links": int(links), "true_links": int(true_links),
            "pairwise_precision": round(true_links / links, 6) if links else None,
            "pairwise_recall": round(true_links / true_pairs, 6) if true_pairs else None}
    if "decisions" in labels:
        import pyarrow as pa

        left, right, decision = zip(*labels["decisions"], strict=True)
        con.register("label_decisions", pa.table({"l": list(left), "r": list(right),
                                                  "decision": list(decision)}))
        rows = con.execute("""
            SELECT d.decision, count(*), count(*) FILTER (WHERE coalesce(p.is_link, false))
            FROM label_decisions d JOIN (SELECT unique_id FROM """ + table + """) x
                 ON x.unique_id = d.l
            LEFT JOIN label_links p ON p.unique_id_l = least(d.l, d.r)
                 AND p.unique_id_r = greatest(d.l, d.r)
            GROUP BY 1 ORDER BY 1""").fetchall()
        counts = {d: (int(n), int(k)) for d, n, k in rows}
        must_n, must_linked = counts.get("must_link", (0, 0))
        cannot_n, cannot_linked = counts.get("cannot_link", (0, 0))
        linked = must_linked + cannot_linked
        result["steward_decisions"] = {
            "must_link": must_n, "must_link_linked": must_linked,
            "cannot_link": cannot_n, "cannot_link_linked": cannot_linked,
            "precision": round(must_linked / linked, 6) if linked else None,
            "recall": round(must_linked / must_n, 6) if must_n else None}
    return result


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _level_rows(model: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = round(math.log2(m / u), 2) if m and u else ""
            rows.append([comparison["output_column_name"], level["label_for_charts"],
                         f"{m:.6g}" if m is not None else "", f"{u:.6g}" if u is not None else "",
                         weight, "tf" if level.get("tf_adjustment_column") else ""])
    return rows


def _charts_html(specs: dict[str, dict[str, Any]]) -> str:
    from splink.internals.html_utils import json_for_html, load_chart_libraries

    if not specs:
        return ""
    libraries = load_chart_libraries()
    parts = [f"<script>{libraries[name]}</script>" for name in ("vega", "vega-lite", "vega-embed")]
    for i, (title, spec) in enumerate(specs.items()):
        parts.append(f"<h3>{html.escape(title)}</h3><div id='chart{i}'></div>"
                     f"<script>vegaEmbed(document.getElementById('chart{i}'), "
                     f"{json_for_html(spec)}, {{}});</script>")
    return "\n".join(parts)


def write_report(path: Path, trained) -> Path:
    """Write the training report of a TrainedModel as self-contained HTML."""
    model, fit, report = trained.settings, trained.profile, trained.report
    profile = fit["profile"]
    sources = sorted(profile["by_source"])
    profile_rows = [[f, e["fill_rate"], e.get("distinct_share", ""), e["filled"],
                     *[profile["by_source"][s]["fill_rate"].get(f, 0.0) for s in sources]]
                    for f, e in sorted(profile["fields"].items())]
    comparisons = [[c["output_column_name"], c.get("comparison_description", "").replace(
                        "CustomComparison", ""),
                    len([lv for lv in c["comparison_levels"] if not lv.get("is_null_level")])]
                   for c in model["comparisons"]]
    from pipelines.resolve.model import applicable_guard

    guard_rows = []
    for guard in link_guards(trained.party_type):
        applied, notes = applicable_guard(model, guard)
        guard_rows.append([guard["name"], "applies" if applied else "skipped",
                           "; ".join(notes)])
    sections = [
        f"<h1>Training report: {html.escape(trained.party_type)} model</h1>",
        f"<p>{report['records']:,} records, seed {fit['seed']}. Prior (probability that two "
        f"random records match) {report['probability_two_random_records_match']:.6g}, from the "
        "deterministic rules below; nightly runs rescale it to their record count.</p>",
        "<h2>Field profile</h2><p>Fill rate (share of records with a value), distinct share "
        f"(distinct values / filled), filled records, and fill rate per source. Fields filled "
        f"on fewer than {fit['min_fill_rate']:.1%} of records are treated as absent.</p>",
        _table(["field", "fill rate", "distinct share", "filled", *sources], profile_rows),
        "<h2>Comparisons</h2>", _table(["comparison", "description", "levels"], comparisons),
        "<h3>Left out</h3>",
        _table(["comparison", "why"], sorted(report["excluded_comparisons"].items())),
        "<h2>Blocking rules (prediction)</h2>",
        _table(["rule", "comparisons (pre-filter)", "per record",
                "per record at the expected size (training.blocking.expected_records)",
                "adds per record to the rules above (counted in the budget)",
                "left out because"],
               [[r["rule"], r.get("comparisons", ""), r.get("per_record", ""),
                 r.get("per_record_at_expected", ""), r.get("adds_per_record", ""),
                 r.get("excluded", "")]
                for r in report["blocking"]]),
        "<h3>Cumulative comparisons (Splink blocking analysis)</h3>",
        _table(["rule", "marginal", "cumulative", "per record", "estimated from a sample"],
               [[r["rule"], r["marginal"], r["cumulative"],
                 round(r["cumulative"] / report["records"], 3), r["is_estimate"]]
                for r in report["blocking_cumulative"]]),
        "<h2>Training</h2><h3>Deterministic rules (prior)</h3>",
        _table(["rule"], [[r] for r in report["deterministic_rules"]]),
        "<h3>EM passes</h3>",
        _table(["blocking rule", "pairs", "m estimated for", "levels this pass never saw",
                "skipped"],
               [[p["rule"], p["pairs"], ", ".join(p.get("estimated", [])),
                 "; ".join(p.get("levels_not_observed", [])), p.get("skipped", "")]
                for p in report["em_passes"]]),
        _table(["comparison", "EM passes that estimated m"], sorted(report["m_estimates"].items())),
        "<h2>m, u and weight per level</h2>",
        _table(["comparison", "level", "m", "u", "weight (bits)", "term frequency"],
               _level_rows(model)),
        "<h2>Training cost</h2>",
        f"<p>Prior, u and EM estimated on {html.escape(str(report.get('backend', 'duckdb')))}."
        "</p>",
        _table(["step", "seconds"], list(report.get("seconds", {}).items())),
        "<h2>Link guards (resolution.yaml)</h2>",
        _table(["guard", "status", "notes"], guard_rows),
    ]
    labels = report.get("labels")
    if labels:
        sections.append("<h2>Against labels</h2><pre>" + html.escape(json.dumps(labels, indent=2))
                        + "</pre>")
    else:
        sections.append("<h2>Against labels</h2><p>No labels given (`ucv train --truth` or "
                        "steward decisions in stewardship/overrides.csv).</p>")
    sections.append("<h2>Charts</h2>" + _charts_html(report.get("charts", {})))
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:90%}th{background:#eee}")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(path.name)}</title><style>{style}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
