"""The golden stage's configuration: survivorship rules, 360° rules and the marketing export (YAML)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.settings import CANONICAL_SCHEMA_FILE, SCHEMAS_DIR

SURVIVORSHIP_FILE = SCHEMAS_DIR / "survivorship.yaml"
WAREHOUSE_SCHEMA_FILE = SCHEMAS_DIR / "warehouse.yaml"

RULE_NAMES = {"source_trust", "recency", "completeness", "most_frequent", "not_outvoted",
              "prefer"}


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


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def canonical_fields() -> dict[str, str]:
    """Canonical record field -> DuckDB type, in schema order."""
    fields = load_yaml(CANONICAL_SCHEMA_FILE)["fields"]
    return {name: spec["type"] for name, spec in fields.items()}


def survivorship_config(path: Path = SURVIVORSHIP_FILE) -> dict:
    return load_yaml(path)


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
        )
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
    """Every golden field in group order (each also gets `<field>_source_record_id`)."""
    return [field for group in survivorship_groups(config) for field in group.fields]
