"""Source mappings: how one source system's export is read and mapped to the canonical record.

A mapping is data (`schemas/sources/<system>.yaml`, format in docs/mapping_format.md). Loading
checks it completely — unknown keys, formats, canonical fields, columns the export does not have,
regular expressions (compiled with RE2, so none can take more than linear time), a missing or
malformed expectation suite — and fails with a message naming the file and key, so a bad mapping
never reaches a nightly run.
"""

from __future__ import annotations

import codecs
import importlib
import json
import re
import string
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from pipelines.ingest.errors import MappingError
from pipelines.settings import CANONICAL_SCHEMA_FILE, EXPECTATIONS_DIR, SOURCES_DIR

FORMATS = ("csv", "parquet", "jsonl")
PARTY_TYPES = ("person", "organization")
NAME_STYLES = ("parts", "full")
NAME_ORDERS = ("auto", "given_first", "family_first")
FULL_IN_FAMILY = ("chinese", "any", "off")
PHONE_KINDS = ("mobile", "landline")
# How an identifier matched by a declared pattern is written in canonical form.
CANONICAL_FORMS = ("upper", "compact", "digits", "de_register", "gb_company_number")
DEFAULT_MAX_VALUE_LENGTH = 10_000
# What extract does with a line it cannot decode or parse (docs/mapping_format.md#on_bad_line)
BAD_LINE_POLICIES = ("fail", "quarantine")

# Canonical fields a mapping's sections (name, phones, email, address, identifiers, party_type)
# produce, or that are derived from other fields; `fields:` may set every other one directly.
DERIVED_FIELDS = frozenset({
    "source_record_id", "source_system", "source_key", "source_file", "source_row_number", "run_id",
    "source_part", "party_type", "full_name", "given_name", "family_name", "name_suffix",
    "given_name_norm", "family_name_norm", "family_name_key", "given_name_canonical",
    "given_name_origin", "birth_family_name", "birth_family_name_norm", "name_script",
    "name_native", "birth_date_ambiguous", "org_name", "org_name_norm", "org_name_tokens",
    "org_name_qualifiers", "org_name_core", "org_legal_form", "registration_id", "national_id", "national_id_type",
    "phone_mobile", "phone_landline", "email", "street", "house_number", "postcode", "city",
    "country", "street_display", "house_number_display", "city_display", "policy_key",
    "quality_flags",
})


@cache
def canonical_schema(schema_file: Path = CANONICAL_SCHEMA_FILE) -> dict:
    return yaml.safe_load(schema_file.read_text(encoding="utf-8"))


def canonical_fields(schema_file: Path = CANONICAL_SCHEMA_FILE) -> dict[str, str]:
    """Canonical field name -> DuckDB type, in schema order."""
    return {name: spec["type"] for name, spec in canonical_schema(schema_file)["fields"].items()}


def canonical_max_length(name: str) -> int | None:
    """Longest value (characters) a text field takes; None for non-text fields."""
    schema = canonical_schema()
    spec = schema["fields"][name]
    if spec["type"] != "VARCHAR":
        return None
    return int(spec.get("max_length") or schema.get("default_max_length") or 1000)


@dataclass(frozen=True)
class ValueExpr:
    """A value taken from the export: one or more references (columns or `a.b` JSON paths)
    combined (first non-blank, or joined), or a constant; then regex rewrites, then a value map."""

    refs: tuple[str, ...] = ()
    combine: str = "first"                          # first | concat
    separator: str = " "
    constant: Any = None
    rewrites: tuple[tuple[str, str], ...] = ()      # (RE2 pattern, replacement), applied in order
    values: dict[str, Any] | None = None            # written value -> canonical (unlisted kept)

    @property
    def is_plain(self) -> bool:
        return len(self.refs) == 1 and not self.rewrites and not self.values

    @property
    def root_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.split(".", 1)[0] for ref in self.refs))


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field taken from a value expression, with its parsing rules."""

    expr: ValueExpr
    formats: tuple[str, ...] = ()        # strptime formats for DATE / TIMESTAMP fields
    decimal: str = "."                   # decimal separator for DOUBLE fields

    @property
    def column(self) -> ValueExpr | None:
        return self.expr if self.expr.refs else None


@dataclass(frozen=True)
class PartyTypeRule:
    """How a row's party type is decided: a column's values mapped to person/organization, and
    (unless switched off) a person whose name holds a legal form or company word is an organization."""

    column: ValueExpr | None = None
    values: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    infer_from_name: bool = True


@dataclass(frozen=True)
class NameSpec:
    """How names are given: `parts` (given + family columns) or `full` (one column, any order)."""

    style: str
    given: ValueExpr | None = None
    family: ValueExpr | None = None
    full: ValueExpr | None = None
    native: ValueExpr | None = None            # hanzi full name column, if any
    organization: ValueExpr | None = None      # organization name column (may equal `full`)
    suffix: ValueExpr | None = None            # JR / SR / jun. / sen. / III in a column of its own
    birth_family: ValueExpr | None = None      # family name at birth (Geburtsname)
    order: str = "auto"                        # `full` names: auto | given_first | family_first
    full_in_family: str = "chinese"            # `parts`: split a full name found in `family`


@dataclass(frozen=True)
class PhoneSpec:
    """A column holding phone numbers; `list` columns hold a JSON list of numbers."""

    column: ValueExpr
    kind: str | None = None              # hint used only when the number type is ambiguous
    is_list: bool = False


@dataclass(frozen=True)
class AddressSpec:
    street_line: ValueExpr | None = None       # "Hauptstraße 12" (street + house number)
    one_line: ValueExpr | None = None          # "Hauptstraße 12, 10115 Berlin, DE"
    street: ValueExpr | None = None
    house_number: ValueExpr | None = None
    postcode: ValueExpr | None = None
    city: ValueExpr | None = None
    country: ValueExpr | None = None
    default_country: str | None = None


@dataclass(frozen=True)
class IdPattern:
    """An identifier kind without a checksum, recognised by its format (RE2, full match)."""

    kind: str
    pattern: str
    canonical: str = "upper"


@dataclass(frozen=True)
class IdentifierSpec:
    """A column of national IDs / registration numbers: python-stdnum modules, then patterns."""

    column: ValueExpr
    person: tuple[str, ...] = ()          # stdnum modules for persons, e.g. cn.ric, de.idnr
    organization: tuple[str, ...] = ()    # for organizations, e.g. cn.uscc
    person_patterns: tuple[IdPattern, ...] = ()
    patterns: tuple[IdPattern, ...] = ()  # organization patterns ("HRB 12345")


@dataclass(frozen=True)
class ValidationSpec:
    suite_file: Path
    max_bad_row_share: float = 0.05
    max_row_count_change: float | None = 0.5
    allow_unexpected_columns: bool = False
    max_value_length: int = DEFAULT_MAX_VALUE_LENGTH


@dataclass(frozen=True)
class DeclaredRows:
    """Where an export says how many data rows it holds (docs/mapping_format.md#declared_rows):
    its last non-blank line (`trailer`, a pattern whose group 1 is the count; that line is no
    row), or a control file beside it (`control_file`, a name template; `pattern` finds the
    count in its text, else the whole text is the number). Patterns run with RE2."""

    trailer: str | None = None
    control_file: str | None = None
    pattern: str | None = None

    def control_name(self, data_file: str) -> str | None:
        """The control file's name for a data file's name (None: the count is in a trailer)."""
        if self.control_file is None:
            return None
        return self.control_file.format(file=data_file, stem=PurePosixPath(data_file).stem)


@dataclass(frozen=True)
class RecordSpec:
    """A further record each row holds nested: one per object in column `source`, or one per
    element when it holds a list; `mapping` maps it (its references see that one element)."""

    part: str
    source: str
    key: ValueExpr | None
    mapping: SourceMapping


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
    declared_rows: DeclaredRows | None = None
    optional_columns: tuple[str, ...] = ()
    phones: tuple[PhoneSpec, ...] = ()
    phone_default_region: str | None = None
    email: ValueExpr | None = None
    address: AddressSpec = field(default_factory=AddressSpec)
    identifiers: tuple[IdentifierSpec, ...] = ()
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    email_in_phone: bool = True          # an e-mail address written in a phone column is the e-mail
    records: tuple[RecordSpec, ...] = ()
    part: RecordSpec | None = None       # set on the mapping of a nested record
    description: str = ""

    @property
    def all_columns(self) -> tuple[str, ...]:
        return self.columns + self.optional_columns

    def suite(self) -> dict:
        """The Great Expectations suite (JSON) for this source."""
        return json.loads(self.validation.suite_file.read_text(encoding="utf-8"))

    def value_limits(self) -> dict[str, int]:
        """Reference -> longest value it may hold: the tightest limit of the fields it feeds."""
        limits: dict[str, int] = {}

        def feed(expr: ValueExpr | None, target: str) -> None:
            limit = canonical_max_length(target) if expr is not None else None
            if limit is None or expr is None:
                return
            for ref in expr.refs:
                limits[ref] = min(limits.get(ref, limit), limit)

        spec = self.name_spec
        for key, target in (("given", "given_name"), ("family", "family_name"),
                            ("full", "full_name"), ("native", "full_name"),
                            ("organization", "org_name"), ("suffix", "name_suffix"),
                            ("birth_family", "birth_family_name")):
            feed(getattr(spec, key), target)
        feed(self.email, "email")
        for phone in self.phones:
            if not phone.is_list:
                feed(phone.column, "phone_mobile")
        addr = self.address
        for key, target in (("street_line", "street"), ("one_line", "full_name"),
                            ("street", "street"), ("house_number", "house_number"),
                            ("postcode", "postcode"), ("city", "city"), ("country", "country")):
            feed(getattr(addr, key), target)
        for ident in self.identifiers:
            feed(ident.column, "national_id" if ident.person else "registration_id")
        for name, spec_ in self.fields.items():
            feed(spec_.column, name)
        for record in self.records:
            for ref, limit in record.mapping.value_limits().items():
                limits[ref] = min(limits.get(ref, limit), limit)
        return limits


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

    SECTION_KEYS = {"party_type", "name", "phones", "phone_default_region", "email", "address",
                    "identifiers", "fields", "reroute"}
    TOP_KEYS = SECTION_KEYS | {"source", "description", "file_pattern", "format", "encoding",
                               "delimiter", "quote", "native_key", "columns", "optional_columns",
                               "validation", "records", "on_bad_line", "declared_rows"}
    RECORD_KEYS = SECTION_KEYS | {"part", "from", "native_key"}
    VALUE_KEYS = {"column", "columns", "concat", "separator", "value", "values", "rewrite"}

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
        if value in self.columns:
            return value
        root, _, rest = value.partition(".")
        if root not in self.columns:
            raise self.fail(key, f"names column {value!r}, which is not among the export's "
                                 f"columns ({', '.join(self.columns)})")
        if not rest or any(not part.strip() or part != part.strip() for part in rest.split(".")):
            raise self.fail(key, f"{value!r} is not a valid path `column.key[.key...]` "
                                 "(empty or blank-padded key)")
        return value

    def value(self, doc: Any, key: str, required: bool = False) -> ValueExpr | None:
        """A value expression: a column reference, or {column | columns | concat | value,
        separator, rewrite: [{pattern, replace}], values: {written: canonical}}."""
        if doc is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if isinstance(doc, str):
            return ValueExpr(refs=(self.column(doc, key, required) or "",))
        self.keys(doc, self.VALUE_KEYS, key)
        sources = [k for k in ("column", "columns", "concat", "value") if k in doc]
        if len(sources) != 1:
            raise self.fail(key, "needs exactly one of `column`, `columns` (first non-blank), "
                                 "`concat` (joined) or `value` (a constant)")
        combine, constant = "first", None
        refs: tuple[str, ...] = ()
        if "column" in doc:
            refs = (self.column(doc["column"], f"{key}.column", True) or "",)
        elif "value" in doc:
            constant = doc["value"]
            if isinstance(constant, dict | list):
                raise self.fail(f"{key}.value", "must be a single value")
        else:
            name = sources[0]
            items = doc[name]
            if not isinstance(items, list) or len(items) < 2:
                raise self.fail(f"{key}.{name}", "must list at least two column references")
            refs = tuple(self.column(item, f"{key}.{name}[{i}]", True) or ""
                         for i, item in enumerate(items))
            combine = "concat" if name == "concat" else "first"
        separator = doc.get("separator", " ")
        if not isinstance(separator, str):
            raise self.fail(f"{key}.separator", "must be text")
        if "separator" in doc and combine != "concat":
            raise self.fail(f"{key}.separator", "applies to `concat` only")
        rewrites = []
        rules = doc.get("rewrite", []) or []
        if not isinstance(rules, list):
            raise self.fail(f"{key}.rewrite", "must be a list of {pattern, replace}")
        for i, rule in enumerate(rules):
            where = f"{key}.rewrite[{i}]"
            self.keys(rule, {"pattern", "replace"}, where, required=("pattern",))
            replacement = rule.get("replace", "")
            if not isinstance(replacement, str):
                raise self.fail(f"{where}.replace", "must be text")
            rewrites.append((self.regex(rule["pattern"], f"{where}.pattern"), replacement))
        values = doc.get("values")
        if values is not None and not isinstance(values, dict):
            raise self.fail(f"{key}.values", "must map written values to canonical values")
        for raw, mapped in (values or {}).items():
            if isinstance(mapped, dict | list):
                raise self.fail(f"{key}.values.{raw}", "must map to a single value")
        return ValueExpr(refs=refs, combine=combine, separator=separator, constant=constant,
                         rewrites=tuple(rewrites),
                         values={str(k): v for k, v in values.items()} if values else None)

    def regex(self, pattern: Any, key: str) -> str:
        """A regular expression for input values: compiled with RE2 (linear time, as DuckDB runs
        it); patterns RE2 refuses (backreferences, look-around) could backtrack, so are refused."""
        if not isinstance(pattern, str) or not pattern:
            raise self.fail(key, "must be a regular expression")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.fail(key, f"not a regular expression: {exc}") from None
        problem = re2_problem(pattern)
        if problem:
            raise self.fail(key, f"not a linear-time (RE2) regular expression: {problem}")
        return pattern

    def mapping(self, doc: dict) -> SourceMapping:
        self.keys(doc, self.TOP_KEYS, "", required=("source", "file_pattern", "format",
                                                    "native_key", "columns", "name"))
        name = str(doc["source"])
        if not name.isidentifier():
            raise self.fail("source", f"{name!r} must be a simple identifier (letters, digits, _)")
        fmt = doc["format"]
        if fmt not in FORMATS:
            raise self.fail("format", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        pattern = self.file_pattern(doc["file_pattern"])
        encoding = doc.get("encoding", "utf-8")
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise self.fail("encoding", f"unknown encoding {encoding!r}") from None
        delimiter, quote = doc.get("delimiter", ","), doc.get("quote", '"')
        for key, char in (("delimiter", delimiter), ("quote", quote)):
            if not isinstance(char, str) or len(char) != 1:
                raise self.fail(key, f"{char!r} must be a single character (text, e.g. ';')")
            if char.isalnum() or char in "\r\n" or char == " " and key == "quote":
                raise self.fail(key, f"{char!r} cannot separate or quote fields "
                                     "(a letter, digit or line break)")
        if delimiter == quote:
            raise self.fail("quote", "must differ from the delimiter")
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
        base = SourceMapping(
            name=name, file=self.path, file_pattern=pattern, format=fmt,
            encoding=str(encoding), delimiter=delimiter, quote=quote, on_bad_line=on_bad_line,
            declared_rows=self.declared_rows(doc.get("declared_rows"), fmt),
            native_key=native_key or "", columns=tuple(doc["columns"]),
            optional_columns=tuple(doc.get("optional_columns", [])),
            party_type=PartyTypeRule(default="person"), name_spec=NameSpec(style="parts"),
            validation=self.validation(doc.get("validation", {}), name),
            description=str(doc.get("description", "")),
        )
        mapping = self.sections(doc, "", base)
        records = doc.get("records", []) or []
        if not isinstance(records, list):
            raise self.fail("records", "must be a list of {part, from, native_key, name, ...}")
        specs = []
        for i, item in enumerate(records):
            specs.append(self.record(item, f"records[{i}]", mapping))
        parts = [r.part for r in specs]
        if len(set(parts)) != len(parts):
            raise self.fail("records", "names a `part` twice")
        return replace(mapping, records=tuple(specs))

    def declared_rows(self, doc: Any, fmt: str) -> DeclaredRows | None:
        """`declared_rows: {trailer: <pattern>}` or `{control_file: <name>, pattern: <pattern>}`."""
        if doc is None:
            return None
        key = "declared_rows"
        self.keys(doc, {"trailer", "control_file", "pattern"}, key)
        if ("trailer" in doc) == ("control_file" in doc):
            raise self.fail(key, "needs exactly one of `trailer` (a pattern for the file's last "
                                 "line) or `control_file` (the name of a file beside it)")
        if "trailer" in doc:
            if "pattern" in doc:
                raise self.fail(f"{key}.pattern", "applies to `control_file`; for a trailer the "
                                                  "`trailer` value is the pattern")
            if fmt == "parquet":
                raise self.fail(f"{key}.trailer", "a Parquet file has no last line; declare the "
                                                  "count in a `control_file`")
            return DeclaredRows(trailer=self.count_regex(doc["trailer"], f"{key}.trailer"))
        name = doc["control_file"]
        where = f"{key}.control_file"
        if not isinstance(name, str) or not name.strip():
            raise self.fail(where, "must be a file name template such as '{file}.ctl'")
        try:
            parsed = list(string.Formatter().parse(name))
        except ValueError as exc:
            raise self.fail(where, f"{name!r} is not a name template: {exc}") from None
        fields = [(f, spec, conv) for _, f, spec, conv in parsed if f is not None]
        literal = "".join(text for text, *_ in parsed)
        if not fields or not literal or any(f not in ("file", "stem") or spec or conv
                                            for f, spec, conv in fields):
            raise self.fail(where, f"{name!r} must name the data file with {{file}} (its whole "
                                   "name) or {stem} (without the last suffix), nothing else in "
                                   "braces, plus a suffix of its own: '{file}.ctl', '{stem}.done'")
        if re.search(r"[\\/\0]", name):
            raise self.fail(where, f"{name!r} must be a plain file name beside the data file "
                                   "(no folder)")
        pattern = doc.get("pattern")
        return DeclaredRows(control_file=name, pattern=None if pattern is None
                            else self.count_regex(pattern, f"{key}.pattern"))

    def count_regex(self, pattern: Any, key: str) -> str:
        """A linear-time regex whose first group holds a row count."""
        pattern = self.regex(pattern, key)
        if re.compile(pattern).groups < 1:
            raise self.fail(key, f"{pattern!r} needs a group around the count, e.g. '(\\d+)'")
        return pattern

    def file_pattern(self, value: Any) -> str:
        """A glob inside the landing folder: absolute paths and `..` would read outside it."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail("file_pattern", "must be a file name pattern such as 'sales*.csv'")
        if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() \
                or PureWindowsPath(value).drive:
            raise self.fail("file_pattern", f"{value!r} is absolute; patterns are relative to "
                                            "the landing folder")
        if ".." in re.split(r"[\\/]", value):
            raise self.fail("file_pattern", f"{value!r} climbs out of the landing folder (`..`)")
        if "\0" in value:
            raise self.fail("file_pattern", "contains a NUL character")
        return value

    def sections(self, doc: dict, where: str, base: SourceMapping) -> SourceMapping:
        """The sections a record is mapped by (top level, or one entry of `records:`)."""
        at = f"{where}." if where else ""
        reroute = doc.get("reroute", {}) or {}
        self.keys(reroute, {"email_in_phone", "phone_in_email"}, f"{at}reroute")
        for key, flag in reroute.items():
            if not isinstance(flag, bool):
                raise self.fail(f"{at}reroute.{key}", "must be true or false")
        if reroute.get("phone_in_email") is False:
            raise self.fail(f"{at}reroute.phone_in_email", "cannot be switched off: a phone "
                            "number in the e-mail field is moved to the phones, never dropped")
        region = self.region(doc.get("phone_default_region"), f"{at}phone_default_region") \
            if "phone_default_region" in doc else base.phone_default_region
        if "name" not in doc:
            raise self.fail(f"{at}name", "is required")
        return replace(
            base,
            party_type=self.party_type(doc.get("party_type"), at),
            name_spec=self.name_spec(doc["name"], at),
            phones=self.phones(doc.get("phones", []), at),
            phone_default_region=region,
            email=self.value(doc.get("email"), f"{at}email"),
            address=self.address(doc.get("address", {}), at),
            identifiers=self.identifiers(doc.get("identifiers", []), at),
            fields=self.fields(doc.get("fields", {}), at),
            email_in_phone=bool(reroute.get("email_in_phone", True)),
        )

    def record(self, doc: Any, where: str, parent: SourceMapping) -> RecordSpec:
        self.keys(doc, self.RECORD_KEYS, where, required=("part", "from", "name"))
        part = doc["part"]
        if not isinstance(part, str) or not part.isidentifier():
            raise self.fail(f"{where}.part", f"{part!r} must be a simple identifier (claimant)")
        source = self.column(doc["from"], f"{where}.from", required=True) or ""
        if "." in source and source not in self.columns:
            raise self.fail(f"{where}.from", "must name a column holding a JSON object or list "
                                             "(not a path into one)")
        key = self.value(doc.get("native_key"), f"{where}.native_key")
        sub = self.sections(doc, where, replace(parent, records=()))
        for ref in references(sub):
            if ref.split(".", 1)[0] == source and ref == source:
                raise self.fail(where, f"refers to {source!r} itself; name keys of its elements "
                                       f"({source}.name)")
        spec = RecordSpec(part=part, source=source, key=key, mapping=sub)
        return RecordSpec(part=part, source=source, key=key, mapping=replace(sub, part=spec))

    def region(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        if not (isinstance(value, str) and len(value) == 2 and value.isalpha() and value.isupper()):
            raise self.fail(key, f"{value!r} is not an ISO 3166-1 alpha-2 code like DE")
        return value

    def party_type(self, doc: Any, at: str) -> PartyTypeRule:
        key = f"{at}party_type"
        if doc is None:
            return PartyTypeRule(default="person")
        if isinstance(doc, str):
            if doc not in PARTY_TYPES:
                raise self.fail(key, f"must be one of {PARTY_TYPES} or a rule")
            return PartyTypeRule(default=doc)
        self.keys(doc, {"column", "values", "default", "infer_from_name"}, key)
        values = doc.get("values", {}) or {}
        if not isinstance(values, dict):
            raise self.fail(f"{key}.values", "must map written values to person/organization")
        for raw, party in values.items():
            if party not in PARTY_TYPES:
                raise self.fail(f"{key}.values.{raw}", f"{party!r} is not one of {PARTY_TYPES}")
        default = doc.get("default")
        if default is not None and default not in PARTY_TYPES:
            raise self.fail(f"{key}.default", f"{default!r} is not one of {PARTY_TYPES}")
        infer = doc.get("infer_from_name", True)
        if not isinstance(infer, bool):
            raise self.fail(f"{key}.infer_from_name", "must be true or false")
        column = self.value(doc.get("column"), f"{key}.column")
        if column is None and default is None:
            raise self.fail(key, "needs a column with values, or a default")
        return PartyTypeRule(column=column, values={str(k): v for k, v in values.items()},
                             default=default, infer_from_name=infer)

    def name_spec(self, doc: Any, at: str) -> NameSpec:
        key = f"{at}name"
        refs = ("given", "family", "full", "native", "organization", "suffix", "birth_family")
        self.keys(doc, {"style", "order", "full_in_family", *refs}, key, required=("style",))
        style = doc["style"]
        if style not in NAME_STYLES:
            raise self.fail(f"{key}.style", f"unknown style {style!r} (known: {', '.join(NAME_STYLES)})")
        order = doc.get("order", "auto")
        if order not in NAME_ORDERS:
            raise self.fail(f"{key}.order", f"unknown order {order!r} (known: {', '.join(NAME_ORDERS)})")
        if "order" in doc and style != "full":
            raise self.fail(f"{key}.order", "applies to style 'full' (parts name their columns)")
        full_in_family = doc.get("full_in_family", "chinese")
        if full_in_family not in FULL_IN_FAMILY:
            raise self.fail(f"{key}.full_in_family", f"unknown rule {full_in_family!r} "
                                                     f"(known: {', '.join(FULL_IN_FAMILY)})")
        spec = NameSpec(style=style, order=order, full_in_family=full_in_family,
                        **{k: self.value(doc.get(k), f"{key}.{k}") for k in refs})
        if style == "parts" and not (spec.given and spec.family):
            raise self.fail(key, "style 'parts' needs both `given` and `family` columns")
        if style == "full" and not spec.full:
            raise self.fail(key, "style 'full' needs a `full` column")
        return spec

    def phones(self, doc: Any, at: str) -> tuple[PhoneSpec, ...]:
        if not isinstance(doc, list):
            raise self.fail(f"{at}phones", "must be a list of {column, kind, list}")
        specs = []
        for i, item in enumerate(doc):
            where = f"{at}phones[{i}]"
            if isinstance(item, str):
                item = {"column": item}
            self.keys(item, {"column", "kind", "list"}, where, required=("column",))
            kind = item.get("kind")
            if kind is not None and kind not in PHONE_KINDS:
                raise self.fail(f"{where}.kind", f"{kind!r} is not one of {PHONE_KINDS}")
            is_list = item.get("list", False)
            if not isinstance(is_list, bool):
                raise self.fail(f"{where}.list", "must be true or false")
            column = self.value(item["column"], f"{where}.column", required=True)
            if is_list and column is not None and not column.is_plain:
                raise self.fail(f"{where}.column", "a `list: true` column takes a plain reference")
            specs.append(PhoneSpec(column=column or ValueExpr(), kind=kind, is_list=is_list))
        return tuple(specs)

    def address(self, doc: Any, at: str) -> AddressSpec:
        keys = {"street_line", "one_line", "street", "house_number", "postcode", "city", "country"}
        self.keys(doc, keys | {"default_country"}, f"{at}address")
        return AddressSpec(default_country=self.region(doc.get("default_country"),
                                                       f"{at}address.default_country"),
                           **{k: self.value(doc.get(k), f"{at}address.{k}") for k in keys})

    def id_patterns(self, doc: Any, key: str) -> tuple[IdPattern, ...]:
        if doc is None:
            return ()
        if not isinstance(doc, dict):
            raise self.fail(key, "must map an ID kind to a regular expression or "
                                 "{pattern, canonical}")
        out = []
        for kind, spec in doc.items():
            where = f"{key}.{kind}"
            if not isinstance(kind, str) or not kind.isidentifier():
                raise self.fail(where, f"{kind!r} must be a simple identifier (us_ssn)")
            if not isinstance(spec, dict):
                spec = {"pattern": spec}
            self.keys(spec, {"pattern", "canonical"}, where, required=("pattern",))
            canonical = spec.get("canonical", "upper")
            if canonical not in CANONICAL_FORMS:
                raise self.fail(f"{where}.canonical", f"unknown canonical form {canonical!r} "
                                                      f"(known: {', '.join(CANONICAL_FORMS)})")
            out.append(IdPattern(kind=kind, pattern=self.regex(spec["pattern"], where),
                                 canonical=canonical))
        return tuple(out)

    def identifiers(self, doc: Any, at: str) -> tuple[IdentifierSpec, ...]:
        if not isinstance(doc, list):
            raise self.fail(f"{at}identifiers", "must be a list of {column, person, organization}")
        specs = []
        for i, item in enumerate(doc):
            where = f"{at}identifiers[{i}]"
            self.keys(item, {"column", "person", "organization", "person_patterns",
                             "organization_patterns"}, where, required=("column",))
            kinds = {}
            for party in PARTY_TYPES:
                modules = item.get(party, []) or []
                if not isinstance(modules, list):
                    raise self.fail(f"{where}.{party}", "must be a list of python-stdnum modules")
                for module in modules:
                    if not isinstance(module, str) or not _stdnum_module_exists(module):
                        raise self.fail(f"{where}.{party}",
                                        f"{module!r} is not a python-stdnum module (e.g. cn.ric)")
                kinds[party] = tuple(modules)
            person_patterns = self.id_patterns(item.get("person_patterns"),
                                               f"{where}.person_patterns")
            patterns = self.id_patterns(item.get("organization_patterns"),
                                        f"{where}.organization_patterns")
            if not (any(kinds.values()) or person_patterns or patterns):
                raise self.fail(where, "needs `person` / `organization` stdnum modules or "
                                       "`person_patterns` / `organization_patterns`")
            specs.append(IdentifierSpec(
                column=self.value(item["column"], f"{where}.column", required=True) or ValueExpr(),
                person_patterns=person_patterns, patterns=patterns, **kinds))
        return tuple(specs)

    def fields(self, doc: Any, at: str) -> dict[str, FieldSpec]:
        if not isinstance(doc, dict):
            raise self.fail(f"{at}fields", "must map canonical fields to columns")
        known = canonical_fields()
        specs = {}
        for target, spec in doc.items():
            where = f"{at}fields.{target}"
            if target not in known:
                raise self.fail(where, f"unknown canonical field {target!r} "
                                       f"(see {CANONICAL_SCHEMA_FILE.name})")
            if target in DERIVED_FIELDS:
                raise self.fail(where, f"{target!r} is produced by a section of its own "
                                       "(name, phones, email, address, identifiers, party_type) "
                                       "or derived from other fields")
            if isinstance(spec, str):
                spec = {"column": spec}
            if not isinstance(spec, dict):
                raise self.fail(where, "must be a column name or {column | value, ...}")
            self.keys(spec, self.VALUE_KEYS | {"formats", "decimal"}, where)
            formats = spec.get("formats", [])
            if isinstance(formats, str):
                formats = [formats]
            if formats and known[target] not in ("DATE", "TIMESTAMP"):
                raise self.fail(f"{where}.formats", f"formats apply to dates, {target} is {known[target]}")
            if not all(isinstance(f, str) and "%" in f for f in formats):
                raise self.fail(f"{where}.formats", "must be strptime formats such as '%d.%m.%Y'")
            if spec.get("decimal", ".") not in (".", ","):
                raise self.fail(f"{where}.decimal", "must be '.' or ','")
            value_doc = {k: v for k, v in spec.items() if k in self.VALUE_KEYS}
            specs[target] = FieldSpec(expr=self.value(value_doc, where) or ValueExpr(),
                                      formats=tuple(formats), decimal=spec.get("decimal", "."))
        return specs

    def validation(self, doc: Any, name: str) -> ValidationSpec:
        self.keys(doc, {"suite", "max_bad_row_share", "max_row_count_change",
                        "allow_unexpected_columns", "max_value_length"}, "validation")
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
        longest = doc.get("max_value_length", DEFAULT_MAX_VALUE_LENGTH)
        if not (isinstance(share, int | float) and 0 <= share <= 1):
            raise self.fail("validation.max_bad_row_share", "must be a share between 0 and 1")
        if change is not None and not (isinstance(change, int | float) and change >= 0):
            raise self.fail("validation.max_row_count_change", "must be a non-negative share or null")
        if not (isinstance(longest, int) and longest > 0):
            raise self.fail("validation.max_value_length", "must be a positive number of characters")
        return ValidationSpec(suite_file=suite_file, max_bad_row_share=float(share),
                              max_row_count_change=None if change is None else float(change),
                              allow_unexpected_columns=bool(doc.get("allow_unexpected_columns", False)),
                              max_value_length=longest)


def references(mapping: SourceMapping) -> list[str]:
    """Every column reference a mapping's sections read."""
    exprs: list[ValueExpr | None] = [mapping.party_type.column, mapping.email]
    spec = mapping.name_spec
    exprs += [spec.given, spec.family, spec.full, spec.native, spec.organization, spec.suffix,
              spec.birth_family]
    exprs += [p.column for p in mapping.phones] + [i.column for i in mapping.identifiers]
    addr = mapping.address
    exprs += [addr.street_line, addr.one_line, addr.street, addr.house_number, addr.postcode,
              addr.city, addr.country]
    exprs += [f.expr for f in mapping.fields.values()]
    return [ref for e in exprs if e is not None for ref in e.refs]


def re2_problem(pattern: str) -> str | None:
    """Why RE2 (the linear-time engine DuckDB also uses) refuses `pattern`; None if it compiles."""
    import re2

    try:
        re2.compile(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        return detail.decode() if isinstance(detail, bytes) else str(detail)
    return None


def backtracking_problem(pattern: str) -> str | None:
    """Why `pattern` may take exponential time in a backtracking engine (Python's re, which Great
    Expectations uses): an unbounded repeat inside another unbounded repeat, as in `(a+)+`."""
    sre_parse: Any = importlib.import_module("re._parser")  # Python's own re: how GE runs it
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    unbounded = sre_parse.MAXREPEAT

    def walk(items, inside_repeat: bool) -> str | None:
        for op, arg in items:
            if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
                low, high, sub = arg
                repeats = high == unbounded or high > 100
                if repeats and inside_repeat:
                    return "a repeated group holds another unbounded repeat (like (a+)+)"
                found = walk(sub, inside_repeat or repeats)
                if found:
                    return found
            elif op == sre_parse.SUBPATTERN:
                found = walk(arg[-1], inside_repeat)
                if found:
                    return found
            elif op == sre_parse.BRANCH:
                for branch in arg[1]:
                    found = walk(branch, inside_repeat)
                    if found:
                        return found
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                found = walk(arg[1], inside_repeat)
                if found:
                    return found
            elif op == sre_parse.GROUPREF:
                return "backreferences can take exponential time"
        return None

    return walk(parsed, False)


REGEX_KWARGS = ("regex", "regex_list")


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
        kwargs = exp.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise MappingError(str(suite_file), f"expectations[{i}].kwargs", "must be a mapping")
        column = kwargs.get("column")
        if column is not None and column not in columns:
            raise MappingError(str(suite_file), f"expectations[{i}].kwargs.column",
                               f"column {column!r} is not among the mapping's columns")
        for name in REGEX_KWARGS:
            if name not in kwargs:
                continue
            patterns = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
            for pattern in patterns:
                # Great Expectations evaluates these with Python's backtracking `re`: a pattern
                # that does not compile would be skipped, one that backtracks would hang a run.
                problem = backtracking_problem(pattern) if isinstance(pattern, str) \
                    else "must be text"
                if problem:
                    raise MappingError(str(suite_file), f"expectations[{i}].kwargs.{name}",
                                       f"{pattern!r}: {problem}")


@cache
def _stdnum_module_exists(module: str) -> bool:
    import importlib

    try:
        mod = importlib.import_module(f"stdnum.{module}")
    except ImportError:
        return False
    return hasattr(mod, "validate")
