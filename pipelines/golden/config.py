"""The golden stage's configuration: survivorship rules, 360° rules and the marketing export (YAML)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.settings import CANONICAL_SCHEMA_FILE, SCHEMAS_DIR, layered_config

SURVIVORSHIP_FILE = SCHEMAS_DIR / "survivorship.yaml"
WAREHOUSE_SCHEMA_FILE = SCHEMAS_DIR / "warehouse.yaml"

RULE_NAMES = {"source_trust", "recency", "completeness", "most_frequent", "not_outvoted",
              "prefer", "latest"}

# Canonical fields of the shared contract (DESIGN / the mapping stage) that the golden stage uses.
# Until schemas/canonical.yaml declares one, golden records carry it as a typed NULL, so the rules
# that name it hold and switch on as soon as a mapping fills it.
CONTRACT_FIELDS: dict[str, tuple[str, str]] = {
    "street_display": ("VARCHAR", "street as written (original case, diacritics, script), cleaned"),
    "city_display": ("VARCHAR", "city as written, cleaned"),
    "house_number_display": ("VARCHAR", "house number as written, cleaned"),
    **{f"consent_{channel}": ("BOOLEAN", f"{channel} marketing consent; NULL when the source does "
                                         "not say") for channel in ("email", "sms", "phone", "post")},
    **{f"consent_{channel}_at": ("TIMESTAMP", f"when the {channel} consent was given or withdrawn "
                                              "(UTC)") for channel in ("email", "sms", "phone", "post")},
    "preferred_channel": ("VARCHAR", "channel the customer asked to be contacted by"),
    "language": ("VARCHAR", "correspondence language, ISO 639-1"),
    "salutation": ("VARCHAR", "salutation for letters, as the source gives it"),
    "policy_key": ("VARCHAR", "normalised policy number (links the same policy across sources)"),
}


@dataclass(frozen=True)
class SurvivorshipGroup:
    """Fields that survive together from one record, and the rules that rank the candidates."""

    name: str
    fields: list[str]
    required: list[str]
    rules: list[Any]
    frequency_of: list[str]
    variants_of: list[str]
    party_types: list[str] | None
    source_trust: list[str]
    as_of: str = "updated_at"  # SQL over the winning record: when its statement was made
    candidates: str | None = None  # SQL condition a record must meet to be a candidate
    display: dict[str, dict[str, str]] | None = None  # display column -> {value, same}


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def canonical_specs() -> dict[str, dict]:
    """Canonical record field -> its spec (type, doc): the schema, then contract fields it lacks."""
    fields = dict(load_yaml(CANONICAL_SCHEMA_FILE)["fields"])
    for name, (dtype, doc) in CONTRACT_FIELDS.items():
        fields.setdefault(name, {"type": dtype, "doc": doc})
    return fields


def canonical_fields() -> dict[str, str]:
    """Canonical record field -> DuckDB type, in schema order."""
    return {name: spec["type"] for name, spec in canonical_specs().items()}


def survivorship_config(path: Path | None = None) -> dict:
    """schemas/survivorship.yaml with a configuration folder's survivorship.yaml merged over it
    (`settings.layered_config`: e.g. one group's `rules:` replaced), or the file `path`."""
    return load_yaml(path) if path is not None else layered_config("survivorship.yaml")


def survivorship_groups(config: dict) -> list[SurvivorshipGroup]:
    """The groups of `schemas/survivorship.yaml`, checked against the canonical schema."""
    known = canonical_fields()
    groups = []
    for name, spec in config["groups"].items():
        group = SurvivorshipGroup(
            name=name,
            fields=list(spec["fields"]),
            required=list(spec.get("required", spec["fields"][:1])),
            rules=list(spec["rules"]),
            frequency_of=list(spec.get("frequency_of", spec["fields"])),
            variants_of=list(spec.get("variants_of", spec.get("frequency_of", spec["fields"]))),
            party_types=spec.get("party_types"),
            source_trust=list(spec.get("source_trust", config["source_trust"])),
            as_of=str(spec.get("as_of", "updated_at")),
            candidates=spec.get("candidates"),
            display=dict(spec.get("display") or {}),
        )
        for column, display in (group.display or {}).items():
            if set(display) != {"value", "same"} or display["same"] not in group.fields:
                raise ValueError(f"survivorship group {name!r}: display {column!r} needs `value` "
                                 "(SQL) and `same` (one of the group's fields)")
        for field in group.fields + group.required + group.frequency_of + group.variants_of:
            if field not in known:
                raise ValueError(f"survivorship group {name!r}: {field!r} is not a canonical field")
        for rule in group.rules:
            rule_name = next(iter(rule)) if isinstance(rule, dict) else rule
            if rule_name not in RULE_NAMES:
                raise ValueError(f"survivorship group {name!r}: unknown rule {rule_name!r}")
        groups.append(group)
    return groups


def golden_fields(config: dict) -> list[str]:
    """Every golden field and display column in group order (each with `<field>_source_record_id`)."""
    return [field for group in survivorship_groups(config)
            for field in [*group.fields, *(group.display or {})]]


def computed_columns(config: dict) -> dict[str, str]:
    """Columns computed from a customer's golden fields (name -> SQL), e.g. `display_name`."""
    return {name: " ".join(str(sql).split()) for name, sql in (config.get("computed") or {}).items()}
