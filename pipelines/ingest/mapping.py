"""Source mappings: how one source system's export is read and mapped to the canonical record.

A mapping is data (`schemas/sources/<system>.yaml`, format in docs/mapping_format.md). Loading
checks it completely — unknown keys, formats, canonical fields, columns the export does not have,
a missing or malformed expectation suite — and fails with a message naming the file and key, so
a bad mapping never reaches a nightly run.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.ingest.errors import MappingError
from pipelines.settings import CANONICAL_SCHEMA_FILE, EXPECTATIONS_DIR, SOURCES_DIR

FORMATS = ("csv", "parquet", "jsonl")
PARTY_TYPES = ("person", "organization")
NAME_STYLES = ("parts", "full")
PHONE_KINDS = ("mobile", "landline")
# What extract does with a line it cannot decode or parse (docs/mapping_format.md#on_bad_line)
BAD_LINE_POLICIES = ("fail", "quarantine")

# Canonical fields a mapping's sections (name, phones, email, address, identifiers, party_type)
# produce; `fields:` may set every other canonical field directly.
DERIVED_FIELDS = frozenset({
    "source_record_id", "source_system", "source_key", "source_file", "source_row_number", "run_id",
    "party_type", "full_name", "given_name", "family_name", "name_suffix", "given_name_norm",
    "family_name_norm", "given_name_canonical", "name_script", "name_native", "birth_date_ambiguous",
    "org_name", "org_name_norm", "org_legal_form", "registration_id", "national_id",
    "national_id_type", "phone_mobile", "phone_landline", "email", "street", "house_number",
    "postcode", "city", "country", "quality_flags",
})


@cache
def canonical_fields(schema_file: Path = CANONICAL_SCHEMA_FILE) -> dict[str, str]:
    """Canonical field name -> DuckDB type, in schema order."""
    schema = yaml.safe_load(schema_file.read_text(encoding="utf-8"))
    return {name: spec["type"] for name, spec in schema["fields"].items()}


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field taken from a source column (or a constant), with its parsing rules."""

    column: str | None = None
    value: Any = None                    # constant when no column
    values: dict[str, Any] | None = None  # raw value -> canonical value (unlisted values kept)
    formats: tuple[str, ...] = ()        # strptime formats for DATE / TIMESTAMP fields
    decimal: str = "."                   # decimal separator for DOUBLE fields


@dataclass(frozen=True)
class PartyTypeRule:
    """How a row's party type is decided: a column's values mapped to person/organization."""

    column: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    default: str | None = None


@dataclass(frozen=True)
class NameSpec:
    """How names are given: `parts` (given + family columns) or `full` (one column, any order)."""

    style: str
    given: str | None = None
    family: str | None = None
    full: str | None = None
    native: str | None = None            # hanzi full name column, if any
    organization: str | None = None      # organization name column (may equal `full`)


@dataclass(frozen=True)
class PhoneSpec:
    """A column holding phone numbers; `list` columns hold a JSON list of numbers."""

    column: str
    kind: str | None = None              # hint used only when the number type is ambiguous
    is_list: bool = False


@dataclass(frozen=True)
class AddressSpec:
    street_line: str | None = None       # "Hauptstraße 12" (street + house number)
    one_line: str | None = None          # "Hauptstraße 12, 10115 Berlin, DE"
    street: str | None = None
    house_number: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = None
    default_country: str | None = None


@dataclass(frozen=True)
class IdentifierSpec:
    """A column of national IDs / registration numbers, checked with python-stdnum modules."""

    column: str
    person: tuple[str, ...] = ()          # stdnum modules for persons, e.g. cn.ric, de.idnr
    organization: tuple[str, ...] = ()    # for organizations, e.g. cn.uscc
    # organization IDs without a checksum ("HRB 12345"): type -> regex of the format
    patterns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ValidationSpec:
    suite_file: Path
    max_bad_row_share: float = 0.05
    max_row_count_change: float | None = 0.5
    allow_unexpected_columns: bool = False


@dataclass(frozen=True)
class SourceMapping:
    name: str
    file: Path
    file_pattern: str
    format: str
    native_key: str
    columns: tuple[str, ...]
    party_type: PartyTypeRule
    name_spec: NameSpec
    validation: ValidationSpec
    encoding: str = "utf-8"
    delimiter: str = ","
    quote: str = '"'
    on_bad_line: str = "fail"
    optional_columns: tuple[str, ...] = ()
    phones: tuple[PhoneSpec, ...] = ()
    phone_default_region: str | None = None
    email: str | None = None
    address: AddressSpec = field(default_factory=AddressSpec)
    identifiers: tuple[IdentifierSpec, ...] = ()
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    description: str = ""

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns + self.optional_columns

    def suite(self) -> dict:
        """The Great Expectations suite (JSON) for this source."""
        return json.loads(self.validation.suite_file.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Loading


def load_mappings(sources_dir: Path = SOURCES_DIR,
                  expectations_dir: Path = EXPECTATIONS_DIR) -> dict[str, SourceMapping]:
    """Every `<system>.yaml` in `sources_dir`, checked, by source name."""
    mappings: dict[str, SourceMapping] = {}
    for path in sorted(Path(sources_dir).glob("*.yaml")):
        mapping = load_mapping(path, expectations_dir)
        mappings[mapping.name] = mapping
    if not mappings:
        raise MappingError(str(sources_dir), "-", "no source mappings (*.yaml) found")
    return mappings


def load_mapping(path: Path, expectations_dir: Path = EXPECTATIONS_DIR) -> SourceMapping:
    """One mapping file, checked against the canonical schema and its own column list."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(str(path), "-", f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MappingError(str(path), "-", "must be a YAML mapping")
    return _Parser(path, expectations_dir).mapping(doc)


class _Parser:
    """Builds a SourceMapping from YAML, raising MappingError(file, key, problem) on the first fault."""

    TOP_KEYS = {"source", "description", "file_pattern", "format", "encoding", "delimiter", "quote",
                "native_key", "columns", "optional_columns", "party_type", "name", "phones",
                "phone_default_region", "email", "address", "identifiers", "fields", "validation",
                "on_bad_line"}

    def __init__(self, path: Path, expectations_dir: Path):
        self.path, self.expectations_dir = path, Path(expectations_dir)
        self.columns: tuple[str, ...] = ()

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(str(self.path), key, problem)

    def keys(self, doc: Any, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> dict:
        if not isinstance(doc, dict):
            raise self.fail(where, "must be a mapping of keys to values")
        for key in doc:
            if key not in allowed:
                raise self.fail(f"{where}.{key}" if where else str(key),
                                f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if doc.get(key) in (None, ""):
                raise self.fail(f"{where}.{key}" if where else key, "is required")
        return doc

    def column(self, value: Any, key: str, required: bool = False) -> str | None:
        """A column reference; `a.b` reaches into a nested JSON object in column `a`."""
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a column name")
        root = value if value in self.columns else value.split(".", 1)[0]
        if root not in self.columns:
            raise self.fail(key, f"names column {value!r}, which is not among the export's "
                                 f"columns ({', '.join(self.columns)})")
        return value

    def mapping(self, doc: dict) -> SourceMapping:
        self.keys(doc, self.TOP_KEYS, "", required=("source", "file_pattern", "format",
                                                    "native_key", "columns", "name"))
        name = str(doc["source"])
        if not name.isidentifier():
            raise self.fail("source", f"{name!r} must be a simple identifier (letters, digits, _)")
        fmt = doc["format"]
        if fmt not in FORMATS:
            raise self.fail("format", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        encoding = doc.get("encoding", "utf-8")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise self.fail("encoding", f"unknown encoding {encoding!r}") from None
        delimiter, quote = doc.get("delimiter", ","), doc.get("quote", '"')
        if len(str(delimiter)) != 1 or len(str(quote)) != 1:
            raise self.fail("delimiter", "delimiter and quote must be single characters")
        on_bad_line = doc.get("on_bad_line", "fail")
        if on_bad_line not in BAD_LINE_POLICIES:
            raise self.fail("on_bad_line", f"{on_bad_line!r} is not one of "
                                           f"{', '.join(BAD_LINE_POLICIES)}")
        for key in ("columns", "optional_columns"):
            cols = doc.get(key, [])
            if not isinstance(cols, list) or not all(isinstance(c, str) and c for c in cols):
                raise self.fail(key, "must be a list of column names")
        self.columns = tuple(doc["columns"]) + tuple(doc.get("optional_columns", []))
        if len(set(self.columns)) != len(self.columns):
            raise self.fail("columns", "lists a column twice")
        native_key = self.column(doc["native_key"], "native_key", required=True)
        return SourceMapping(
            name=name, file=self.path, file_pattern=str(doc["file_pattern"]), format=fmt,
            encoding=encoding, delimiter=str(delimiter), quote=str(quote), on_bad_line=on_bad_line,
            native_key=native_key or "", columns=tuple(doc["columns"]),
            optional_columns=tuple(doc.get("optional_columns", [])),
            party_type=self.party_type(doc.get("party_type")),
            name_spec=self.name_spec(doc["name"]),
            phones=self.phones(doc.get("phones", [])),
            phone_default_region=self.region(doc.get("phone_default_region"), "phone_default_region"),
            email=self.column(doc.get("email"), "email"),
            address=self.address(doc.get("address", {})),
            identifiers=self.identifiers(doc.get("identifiers", [])),
            fields=self.fields(doc.get("fields", {})),
            validation=self.validation(doc.get("validation", {}), name),
            description=str(doc.get("description", "")),
        )

    def region(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        if not (isinstance(value, str) and len(value) == 2 and value.isalpha() and value.isupper()):
            raise self.fail(key, f"{value!r} is not an ISO 3166-1 alpha-2 code like DE")
        return value

    def party_type(self, doc: Any) -> PartyTypeRule:
        if doc is None:
            return PartyTypeRule(default="person")
        if isinstance(doc, str):
            if doc not in PARTY_TYPES:
                raise self.fail("party_type", f"must be one of {PARTY_TYPES} or a rule")
            return PartyTypeRule(default=doc)
        self.keys(doc, {"column", "values", "default"}, "party_type")
        values = doc.get("values", {}) or {}
        for raw, party in values.items():
            if party not in PARTY_TYPES:
                raise self.fail(f"party_type.values.{raw}", f"{party!r} is not one of {PARTY_TYPES}")
        default = doc.get("default")
        if default is not None and default not in PARTY_TYPES:
            raise self.fail("party_type.default", f"{default!r} is not one of {PARTY_TYPES}")
        column = self.column(doc.get("column"), "party_type.column")
        if column is None and default is None:
            raise self.fail("party_type", "needs a column with values, or a default")
        return PartyTypeRule(column=column, values={str(k): v for k, v in values.items()},
                             default=default)

    def name_spec(self, doc: Any) -> NameSpec:
        self.keys(doc, {"style", "given", "family", "full", "native", "organization"}, "name",
                  required=("style",))
        style = doc["style"]
        if style not in NAME_STYLES:
            raise self.fail("name.style", f"unknown style {style!r} (known: {', '.join(NAME_STYLES)})")
        spec = NameSpec(style=style, **{k: self.column(doc.get(k), f"name.{k}")
                                         for k in ("given", "family", "full", "native", "organization")})
        if style == "parts" and not (spec.given and spec.family):
            raise self.fail("name", "style 'parts' needs both `given` and `family` columns")
        if style == "full" and not spec.full:
            raise self.fail("name", "style 'full' needs a `full` column")
        return spec

    def phones(self, doc: Any) -> tuple[PhoneSpec, ...]:
        if not isinstance(doc, list):
            raise self.fail("phones", "must be a list of {column, kind, list}")
        specs = []
        for i, item in enumerate(doc):
            where = f"phones[{i}]"
            if isinstance(item, str):
                item = {"column": item}
            self.keys(item, {"column", "kind", "list"}, where, required=("column",))
            kind = item.get("kind")
            if kind is not None and kind not in PHONE_KINDS:
                raise self.fail(f"{where}.kind", f"{kind!r} is not one of {PHONE_KINDS}")
            specs.append(PhoneSpec(column=self.column(item["column"], f"{where}.column") or "",
                                   kind=kind, is_list=bool(item.get("list", False))))
        return tuple(specs)

    def address(self, doc: Any) -> AddressSpec:
        keys = {"street_line", "one_line", "street", "house_number", "postcode", "city", "country"}
        self.keys(doc, keys | {"default_country"}, "address")
        return AddressSpec(default_country=self.region(doc.get("default_country"),
                                                       "address.default_country"),
                           **{k: self.column(doc.get(k), f"address.{k}") for k in keys})

    def identifiers(self, doc: Any) -> tuple[IdentifierSpec, ...]:
        if not isinstance(doc, list):
            raise self.fail("identifiers", "must be a list of {column, person, organization}")
        specs = []
        for i, item in enumerate(doc):
            where = f"identifiers[{i}]"
            self.keys(item, {"column", "person", "organization", "organization_patterns"}, where,
                      required=("column",))
            kinds = {}
            for party in PARTY_TYPES:
                modules = item.get(party, []) or []
                for module in modules:
                    if not _stdnum_module_exists(module):
                        raise self.fail(f"{where}.{party}",
                                        f"{module!r} is not a python-stdnum module (e.g. cn.ric)")
                kinds[party] = tuple(modules)
            if not any(kinds.values()):
                raise self.fail(where, "needs `person` and/or `organization` stdnum modules")
            patterns = item.get("organization_patterns") or {}
            if not isinstance(patterns, dict):
                raise self.fail(f"{where}.organization_patterns", "must map an ID type to a regular expression")
            for kind, pattern in patterns.items():
                try:
                    re.compile(str(pattern))
                except re.error as exc:
                    raise self.fail(f"{where}.organization_patterns.{kind}", f"not a regular expression: {exc}") \
                        from None
            specs.append(IdentifierSpec(column=self.column(item["column"], f"{where}.column") or "",
                                        patterns=tuple((str(k), str(v)) for k, v in patterns.items()),
                                        **kinds))
        return tuple(specs)

    def fields(self, doc: Any) -> dict[str, FieldSpec]:
        if not isinstance(doc, dict):
            raise self.fail("fields", "must map canonical fields to columns")
        known = canonical_fields()
        specs = {}
        for target, spec in doc.items():
            where = f"fields.{target}"
            if target not in known:
                raise self.fail(where, f"unknown canonical field {target!r} "
                                       f"(see {CANONICAL_SCHEMA_FILE.name})")
            if target in DERIVED_FIELDS:
                raise self.fail(where, f"{target!r} is produced by a section of its own "
                                       "(name, phones, email, address, identifiers, party_type)")
            if isinstance(spec, str):
                spec = {"column": spec}
            self.keys(spec, {"column", "value", "values", "formats", "decimal"}, where)
            if ("column" in spec) == ("value" in spec):
                raise self.fail(where, "needs exactly one of `column` or `value`")
            formats = spec.get("formats", [])
            if isinstance(formats, str):
                formats = [formats]
            if formats and known[target] not in ("DATE", "TIMESTAMP"):
                raise self.fail(f"{where}.formats", f"formats apply to dates, {target} is {known[target]}")
            if spec.get("decimal", ".") not in (".", ","):
                raise self.fail(f"{where}.decimal", "must be '.' or ','")
            values = spec.get("values")
            if values is not None and not isinstance(values, dict):
                raise self.fail(f"{where}.values", "must map raw values to canonical values")
            specs[target] = FieldSpec(
                column=self.column(spec.get("column"), f"{where}.column"), value=spec.get("value"),
                values={str(k): v for k, v in values.items()} if values else None,
                formats=tuple(formats), decimal=spec.get("decimal", "."))
        return specs

    def validation(self, doc: Any, name: str) -> ValidationSpec:
        self.keys(doc, {"suite", "max_bad_row_share", "max_row_count_change",
                        "allow_unexpected_columns"}, "validation")
        suite = doc.get("suite")
        if suite is None:
            suite_file = self.expectations_dir / f"{name}.json"
        else:
            suite_file = Path(suite) if Path(suite).is_absolute() else self.path.parent / suite
        if not suite_file.is_file():
            raise self.fail("validation.suite", f"expectation suite {suite_file} does not exist")
        _check_suite(suite_file, self.columns, self.fail)
        share = doc.get("max_bad_row_share", 0.05)
        change = doc.get("max_row_count_change", 0.5)
        if not (isinstance(share, int | float) and 0 <= share <= 1):
            raise self.fail("validation.max_bad_row_share", "must be a share between 0 and 1")
        if change is not None and not (isinstance(change, int | float) and change >= 0):
            raise self.fail("validation.max_row_count_change", "must be a non-negative share or null")
        return ValidationSpec(suite_file=suite_file, max_bad_row_share=float(share),
                              max_row_count_change=None if change is None else float(change),
                              allow_unexpected_columns=bool(doc.get("allow_unexpected_columns", False)))


def _check_suite(suite_file: Path, columns: tuple[str, ...], fail) -> None:
    """The suite must be GE suite JSON whose expectations name existing columns and a rule."""
    try:
        suite = json.loads(suite_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MappingError(str(suite_file), "-", f"not valid JSON: {exc}") from None
    expectations = suite.get("expectations") if isinstance(suite, dict) else None
    if not isinstance(expectations, list):
        raise MappingError(str(suite_file), "expectations", "must be a list")
    for i, exp in enumerate(expectations):
        if not isinstance(exp, dict) or not str(exp.get("type", "")).startswith("expect_"):
            raise MappingError(str(suite_file), f"expectations[{i}].type", "must name an expectation")
        column = (exp.get("kwargs") or {}).get("column")
        if column is not None and column not in columns:
            raise MappingError(str(suite_file), f"expectations[{i}].kwargs.column",
                               f"column {column!r} is not among the mapping's columns")


@cache
def _stdnum_module_exists(module: str) -> bool:
    import importlib

    try:
        mod = importlib.import_module(f"stdnum.{module}")
    except ImportError:
        return False
    return hasattr(mod, "validate")
