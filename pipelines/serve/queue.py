"""The review queue as stewards work it: groups per pair of customers, each pair's records side by
side with Splink's comparison levels, a waterfall of the evidence, and decisions written back."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pipelines.identify.overrides import OverridesInvalid
from pipelines.identify.review import review_group_pairs, review_groups
from pipelines.serve.config import ServeConfig
from pipelines.serve.problems import Problem
from pipelines.serve.stewardship import decide_group, decided_pairs, not_sure_pairs
from pipelines.serve.warehouse import WarehouseVersion

# What each comparison of the models looks at, for showing the two records' values beside it.
COMPARISON_FIELDS = {
    "given_name": ["given_name", "name_native"], "family_name": ["family_name"],
    "name_suffix": ["name_suffix"], "sex": ["sex"], "birth_date": ["birth_date"],
    "national_id": ["national_id"], "phone_mobile": ["phone_mobile"],
    "household": ["street", "house_number", "postcode", "city", "phone_landline", "email"],
    "org_name": ["org_name"], "org_legal_form": ["org_legal_form"],
    "registration_id": ["registration_id"], "phone": ["phone_mobile", "phone_landline"],
    "email": ["email"], "address": ["street", "house_number", "postcode", "city"],
}
RECORD_FIELDS = ["source_record_id", "source_system", "customer_id", "full_name", "given_name",
                 "family_name", "name_native", "org_name", "sex", "birth_date", "national_id",
                 "registration_id", "phone_mobile", "phone_landline", "email", "street",
                 "house_number", "postcode", "city", "country", "policy_number", "product", "role",
                 "updated_at"]


def list_groups(wh: WarehouseVersion, config: ServeConfig, status: str, party_type: str | None,
                limit: int, offset: int) -> tuple[int, list[dict]]:
    """Groups in impact order; 'open' leaves out those decided since this warehouse was published."""
    _, groups = review_groups(wh.cursor(), limit=10**9, offset=0, party_type=party_type)
    decided, unsure = _decisions(config)
    for group in groups:
        _mark(group, decided, unsure)
    if status != "all":
        groups = [g for g in groups if (g["decision"] is None) == (status == "open")]
    return len(groups), groups[offset:offset + limit]


def group_detail(wh: WarehouseVersion, config: ServeConfig, group_id: str) -> dict | None:
    """One group: its customers, every record pair with the two records' values and the evidence."""
    pairs = review_group_pairs(wh.cursor(), group_id)
    if not pairs:
        return None
    record_ids = sorted({p[k] for p in pairs for k in ("source_record_id_l", "source_record_id_r")})
    records = _records(wh, record_ids)
    both = sorted({pairs[0]["customer_id_l"], pairs[0]["customer_id_r"]})
    a, b = both[0], both[-1]
    decided, unsure = _decisions(config)
    group = {"group_id": group_id, "party_type": pairs[0]["party_type"], "customer_a": a,
             "customer_b": b, "record_pairs": [f"{p['source_record_id_l']}\x1f{p['source_record_id_r']}"
                                                for p in pairs]}
    _mark(group, decided, unsure)
    profiles = {p["customer_id"]: p for p in wh.profiles_of(sorted({a, b}))}
    return {
        **group,
        "customers": [_impact(profiles.get(c, {"customer_id": c})) for c in sorted({a, b})],
        "pairs": [_pair_view(p, records) for p in pairs],
        "warehouse_version": wh.label,
    }


def decide_in_group(wh: WarehouseVersion, config: ServeConfig, group_id: str, decision: str,
                    decided_by: str, reason: str) -> dict:
    pairs = review_group_pairs(wh.cursor(), group_id)
    if not pairs:
        raise Problem(404, "Not found", f"no review group {group_id} in warehouse {wh.label}")
    try:
        written = decide_group(pairs, decision, decided_by, reason, config.overrides_file,
                               config.not_sure_file)
    except OverridesInvalid as err:
        raise Problem(409, "Decision conflicts", "; ".join(err.problems), problems=err.problems) from err
    return {"group_id": group_id, "decision": written.decision, "decided_by": decided_by,
            "decided_at": written.decided_at, "pairs": [list(p) for p in written.pairs],
            "file": written.file.name,
            "applies": "from the next pipeline run on" if decision != "not_sure"
                       else "never applied; the group stays in the queue"}


def _decisions(config: ServeConfig) -> tuple[dict, dict]:
    try:
        decided = decided_pairs(config.overrides_file)
    except OverridesInvalid as err:
        raise Problem(409, "Override file invalid", "; ".join(err.problems), problems=err.problems) from err
    return decided, not_sure_pairs(config.not_sure_file)


def _mark(group: dict, decided: dict, unsure: dict) -> None:
    pairs = [tuple(sorted(p.split("\x1f"))) for p in group.get("record_pairs") or []]
    group.pop("record_pairs", None)
    found = next((decided[p] for p in pairs if p in decided), None)
    group["decision"] = found
    group["not_sure"] = next((unsure[p] for p in pairs if p in unsure), None)


def _records(wh: WarehouseVersion, record_ids: list[str]) -> dict[str, dict]:
    cursor = wh.cursor()
    columns = {r[0] for r in cursor.execute("describe source_records").fetchall()}
    select = ", ".join(f'"{c}"' if c in columns else f'null as "{c}"' for c in RECORD_FIELDS)
    cursor = cursor.execute(f"select {select} from source_records where source_record_id in "
                            "(select unnest($ids::varchar[]))", {"ids": record_ids})
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def _impact(profile: dict) -> dict:
    keys = ("customer_id", "full_name", "org_name", "birth_date", "city", "n_source_records",
            "source_systems", "active_policies", "n_active_policies", "total_annual_premium_eur",
            "marketing_consent", "confidence", "value_tier")
    return {k: profile.get(k) for k in keys}


def _pair_view(pair: dict, records: dict[str, dict]) -> dict:
    """The pair's evidence per comparison, each with both records' values and matched/conflicted."""
    left, right = records.get(pair["source_record_id_l"], {}), records.get(pair["source_record_id_r"], {})
    evidence = json.loads(pair["evidence"]) if isinstance(pair.get("evidence"), str) else {}
    labels = _level_labels(pair["party_type"])
    comparisons = []
    for name, values in evidence.items():
        level, weight = values.get("level"), values.get("match_weight")
        outcome = ("missing" if level == -1 else "matched" if (weight or 0) > 0
                   else "conflicted" if (weight or 0) < 0 else "neutral")
        fields = COMPARISON_FIELDS.get(name, [])
        comparisons.append({
            "comparison": name, "level": level, "label": labels.get((name, level), f"level {level}"),
            "match_weight": weight, "outcome": outcome,
            "values": [{"field": f, "left": left.get(f), "right": right.get(f)} for f in fields],
        })
    total = sum((c["match_weight"] or 0) for c in comparisons)
    prior = float(pair["match_weight"]) - total
    return {
        "review_id": pair["review_id"], "reason": pair["reason"],
        "link_blocked_by": pair.get("link_blocked_by"),
        "source_record_id_l": pair["source_record_id_l"], "source_record_id_r": pair["source_record_id_r"],
        "customer_id_l": pair["customer_id_l"], "customer_id_r": pair["customer_id_r"],
        "match_probability": pair["match_probability"], "match_weight": pair["match_weight"],
        "left": left, "right": right, "comparisons": comparisons,
        "waterfall": waterfall(prior, comparisons),
    }


def waterfall(prior: float, comparisons: list[dict]) -> list[dict]:
    """Bars of the match weight: the prior, then each comparison's weight added, then the total."""
    bars, running = [{"label": "prior", "weight": prior, "start": 0.0, "end": prior}], prior
    for c in comparisons:
        weight = c["match_weight"] or 0.0
        bars.append({"label": c["comparison"], "weight": weight, "start": running, "end": running + weight})
        running += weight
    bars.append({"label": "match weight", "weight": running, "start": 0.0, "end": running})
    return bars


@lru_cache(maxsize=4)
def _level_labels(party_type: str) -> dict[tuple[str, int], str]:
    """(comparison, gamma) -> Splink's label for the level (gamma counts down from the first level)."""
    from pipelines.resolve import load_model

    try:
        model = load_model(party_type)
    except Exception:  # a missing model must not hide the queue
        return {}
    labels: dict[tuple[str, int], Any] = {}
    for comparison in model.get("comparisons", []):
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for i, level in enumerate(levels):
            labels[(comparison["output_column_name"], len(levels) - 1 - i)] = level.get("label_for_charts")
        labels[(comparison["output_column_name"], -1)] = "missing on one side"
    return labels
