"""Organizations and identifiers: legal forms out of the name, IDs checked with python-stdnum.

An invalid checksum nulls the identifier and flags the record; it never rejects the row. Every
identifier kind has one canonical form, so all the ways a source writes it compare equal:
German register numbers as register type + number ("Hamburg HRB 012345", "HR B 12345" ->
"HRB 12345"; courts are written by some sources and not others), UK company numbers zero-padded
to 8, credit codes upper-case. A value that passes its checks but has no canonical form is kept
as written and flagged `identifier_not_canonical`.
"""

from __future__ import annotations

import datetime
import importlib
import re
from collections.abc import Callable
from functools import cache, lru_cache

import re2
import yaml

from pipelines.settings import SCHEMAS_DIR
from pipelines.sql import quote_literal
from pipelines.standardize.text import fold, has_han, nfkc


@cache
def legal_form_variants() -> tuple[list[tuple[tuple[str, ...], str]], list[tuple[str, str]]]:
    """(folded word sequences -> code, hanzi suffixes -> code), longest first."""
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "legal_forms.yaml").read_text(encoding="utf-8"))
    latin: list[tuple[tuple[str, ...], str]] = []
    han: list[tuple[str, str]] = []
    for code, variants in ref["legal_forms"].items():
        for variant in variants:
            if has_han(variant):
                han.append((variant, code))
            else:
                words = tuple((fold(variant) or "").split())
                if words:
                    latin.append((words, code))
    latin.sort(key=lambda item: -len(item[0]))
    han.sort(key=lambda item: -len(item[0]))
    return latin, han


@cache
def industry_terms() -> tuple[list[tuple[str, str]], list[tuple[tuple[str, ...], str]]]:
    """(hanzi term -> English words, pinyin word sequence -> English words), longest first
    (schemas/reference/org_terms.yaml)."""
    from pipelines.standardize.text import pinyin

    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "org_terms.yaml").read_text(encoding="utf-8"))
    han = sorted(ref["zh_en"].items(), key=lambda item: -len(item[0]))
    # pinyin as one word and syllable by syllable ("dianzi", "dian zi")
    romanised: dict[tuple[str, ...], str] = {}
    for term, english in han:
        romanised.setdefault((pinyin(term),), english)
    return han, sorted(romanised.items(), key=lambda item: -len(item[0]))


def _translate_han(name: str) -> str:
    """Industry words at the end of a hanzi name in English: "西安豪佳电子" -> "西安豪佳 electronics"."""
    han, _ = industry_terms()
    english: list[str] = []
    while True:
        for term, words in han:
            if name.endswith(term) and len(name) > len(term):
                english.insert(0, words)
                name = name[: -len(term)]
                break
        else:
            return " ".join([name, *english])


def _translate_pinyin(words: tuple[str, ...]) -> tuple[str, ...]:
    """Industry words written in pinyin at the end of a Latin name, in English."""
    _, romanised = industry_terms()
    tail: list[str] = []
    while True:
        for variant, english in romanised:
            if len(words) > len(variant) and words[-len(variant):] == variant:
                tail[:0] = english.split()
                words = words[: -len(variant)]
                break
        else:
            return words + tuple(tail)


def split_legal_form(name: str | None) -> tuple[str | None, str | None]:
    """(org_name_norm, legal form code): "Müller Bau GmbH" -> ("mueller bau", "GMBH"),
    "西安豪佳电子有限公司" -> ("xianhaojia electronics", "CO_LTD")."""
    name = nfkc(name)
    if name is None:
        return None, None
    latin, han = legal_form_variants()
    compact = name.replace(" ", "")
    for suffix, code in han:
        if compact.endswith(suffix) and len(compact) > len(suffix):
            return fold(_translate_han(compact[: -len(suffix)])), code
    if has_han(compact):
        return fold(_translate_han(compact)), None
    words = tuple((fold(name) or "").split())
    for variant, code in latin:
        if len(words) > len(variant) and words[-len(variant):] == variant:
            return " ".join(_translate_pinyin(words[: -len(variant)])), code
    return " ".join(_translate_pinyin(words)) or None, None


# Legal forms that are also ordinary short words or initials: only in their own capitals
# ("Siemens AG", not "Sun Ag").
AMBIGUOUS_FORMS = frozenset({"AG", "SE", "SA", "KG", "UG", "LP", "EG", "EK", "EV"})


def _folded_sql(name_sql: str) -> str:
    """DuckDB form of `fold` good enough for word matching: lower-case, umlauts spelled out."""
    value = f"lower({name_sql})"
    for char, spelled in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        value = f"replace({value}, '{char}', '{spelled}')"
    return f"strip_accents({value})"


@cache
def company_name_patterns() -> tuple[str, str, str]:
    """(folded, case-sensitive, hanzi) RE2 patterns of a name that is an organization's."""
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "company_words.yaml").read_text(encoding="utf-8"))
    forms = yaml.safe_load((SCHEMAS_DIR / "reference" / "legal_forms.yaml").read_text(encoding="utf-8"))
    boundary_start, boundary_end = "(?:^|[^a-z0-9])", "(?:$|[^a-z0-9])"
    words = sorted({re.escape(w) for w in ref["words"]}, key=len, reverse=True)
    stems = sorted({re.escape(w) for w in ref.get("stems") or []}, key=len, reverse=True)
    phrases = [re.escape(p) for p in ref.get("phrases") or []]
    folded_forms, exact_forms, han_forms = set(), set(), set(ref.get("han") or [])
    for variants in forms["legal_forms"].values():
        for variant in variants:
            if has_han(variant):
                han_forms.add(variant)
                continue
            tokens = (fold(variant) or "").split()
            if "".join(tokens) in {c.lower() for c in AMBIGUOUS_FORMS}:
                exact_forms.add(re.escape(variant))
            elif tokens:
                folded_forms.add("[^a-z0-9]*".join(re.escape(t) for t in tokens))
    folded = "|".join([
        f"{boundary_start}(?:{'|'.join(words)}){boundary_end}",
        f"{boundary_start}(?:{'|'.join(stems)})" if stems else "(?!)",
        *phrases,
        f"{boundary_start}(?:{'|'.join(sorted(folded_forms, key=len, reverse=True))})[^a-z0-9]*$",
    ])
    exact = f"(?:^|[\\s,])(?:{'|'.join(sorted(exact_forms, key=len, reverse=True))})$"
    han = "|".join(sorted((re.escape(h) for h in han_forms), key=len, reverse=True))
    return folded, exact, han


def company_name_sql(name_sql: str) -> str:
    """SQL: TRUE when the name (a person's, by its column) holds a legal form or company word."""
    folded, exact, han = company_name_patterns()
    lit = quote_literal
    return (f"coalesce(regexp_matches({_folded_sql(name_sql)}, {lit(folded)}) "
            f"OR regexp_matches({name_sql}, {lit(exact + '|' + han)}), FALSE)")


@cache
def org_qualifier_stems() -> dict[str, tuple[str, ...]]:
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "org_qualifiers.yaml").read_text(encoding="utf-8"))
    return {name: tuple(stems) for name, stems in ref["qualifiers"].items()}


def org_tokens_sql(norm_sql: str) -> str:
    """SQL: the distinct words of an org_name_norm, sorted (NULL for no name)."""
    return (f"CASE WHEN {norm_sql} IS NOT NULL THEN list_sort(list_distinct(list_filter("
            f"string_split({norm_sql}, ' '), lambda t: t <> ''))) END")


# a stem this long also qualifies a word that begins with it mistyped (one edit: "vrwaltungs",
# "esrvices"), or, from FUZZY_STEM + 3 letters on, that holds it run into another word
# ("consultingbeteiligungs"); shorter stems ("invest") only as a word's start. A real word can
# read as a qualifier this way ("Servier" as service, "Capitol" as capital): harmless, since every
# record of that company carries the same word, and a qualifier only matters when two names differ
FUZZY_STEM = 7


def _stem_sql(stem: str) -> str:
    """SQL: whether word `t` carries the qualifier stem (see FUZZY_STEM)."""
    lit, n = f"'{stem}'", len(stem)
    if n < FUZZY_STEM:
        return f"starts_with(t, {lit})"
    mistyped = " OR ".join(f"damerau_levenshtein(left(t, {k}), {lit}) <= 1"
                           for k in (n - 1, n, n + 1))
    inside = f" OR contains(t, {lit})" if n >= FUZZY_STEM + 3 else ""
    return f"(starts_with(t, {lit}) OR (len(t) >= {n - 1} AND ({mistyped})){inside})"


def org_core_sql(norm_sql: str) -> str:
    """SQL: the name without the words that carry a qualifier, spaces removed (NULL when nothing
    is left): what a holding and its operating company have in common."""
    any_stem = " OR ".join(_stem_sql(stem) for stems in org_qualifier_stems().values()
                           for stem in stems)
    return (f"nullif(array_to_string(list_filter(string_split({norm_sql}, ' '), "
            f"lambda t: t <> '' AND NOT ({any_stem})), ''), '')")


def word_qualifier_sql() -> str:
    """SQL: the qualifier (holding, verwaltung, ...) that word `t` carries, NULL for none."""
    cases = " ".join(
        "WHEN " + " OR ".join(_stem_sql(stem) for stem in stems) + f" THEN '{name}'"
        for name, stems in org_qualifier_stems().items())
    return f"CASE {cases} END"


def org_qualifiers_sql(norm_sql: str) -> str:
    """SQL: the qualifiers (holding, verwaltung, ...) whose stems begin a word of the name, one per
    such word: "Clements Holdings Holdings" (the holding of "Clements Holdings") has two."""
    return (f"CASE WHEN {norm_sql} IS NOT NULL THEN list_sort(list_filter("
            f"list_transform(string_split({norm_sql}, ' '), lambda t: {word_qualifier_sql()}), "
            f"lambda q: q IS NOT NULL)) END")


def add_org_word_columns(con, table: str, name_column: str, norm_column: str) -> None:
    """Add `org_name_tokens`, `org_name_qualifiers` and `org_name_core` to `table` (one row per
    distinct organization name), as `org_tokens_sql` / `org_qualifiers_sql` / `org_core_sql`
    compute them, with the qualifier stems matched once per distinct word: per record, ~100
    fuzzy comparisons per word were most of standardization at 1M records. Tests check both
    give the same columns."""
    from pipelines.sql import quote_ident

    t, name, norm = quote_ident(table), quote_ident(name_column), quote_ident(norm_column)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE org_words AS
        SELECT {name} AS name, unnest(string_split({norm}, ' ')) AS t,
               generate_subscripts(string_split({norm}, ' '), 1) AS pos
          FROM {t} WHERE {norm} IS NOT NULL""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE org_word_qualifiers AS
        SELECT t, {word_qualifier_sql()} AS q FROM (SELECT DISTINCT t FROM org_words)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {t} AS
        WITH per_name AS (
            SELECT w.name,
                   coalesce(list_sort(list(q.q) FILTER (WHERE q.q IS NOT NULL)), []) AS qualifiers,
                   nullif(coalesce(string_agg(w.t, '' ORDER BY w.pos)
                                   FILTER (WHERE w.t <> '' AND q.q IS NULL), ''), '') AS core
              FROM org_words w JOIN org_word_qualifiers q USING (t)
             GROUP BY w.name)
        SELECT o.*, {org_tokens_sql(f'o.{norm}')} AS org_name_tokens,
               CASE WHEN o.{norm} IS NOT NULL THEN p.qualifiers END AS org_name_qualifiers,
               CASE WHEN o.{norm} IS NOT NULL THEN p.core END AS org_name_core
          FROM {t} o LEFT JOIN per_name p ON p.name IS NOT DISTINCT FROM o.{name}""")
    con.execute("DROP TABLE org_words; DROP TABLE org_word_qualifiers")


@cache
def _stdnum(module: str):
    return importlib.import_module(f"stdnum.{module}")


def re2_compile(pattern: str):
    """An RE2 (linear-time) pattern, compiled once."""
    return _re2_compile(pattern)


@lru_cache(maxsize=1024)
def _re2_compile(pattern: str):
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


DE_REGISTER = r"(?:^|[\s,(])(HR ?A|HR ?B|GNR|PR|VR) ?0*([0-9]{1,6})(?: ?([A-Z]{1,2}))?$"
NOT_ID_CHAR = re.compile(r"[\s\-./:]+")


def canonical_identifier(value: str, form: str) -> str | None:
    """`value` (NFKC, trimmed) in canonical form `form`; None when it has none."""
    upper = " ".join(value.upper().split())
    if form == "upper":
        return upper
    if form == "compact":
        return NOT_ID_CHAR.sub("", upper) or None
    if form == "digits":
        return "".join(c for c in upper if c.isdigit()) or None
    if form == "de_register":
        found = re2_compile(DE_REGISTER).search(upper)
        if found is None:
            return None
        kind = found.group(1).replace(" ", "")
        suffix = f" {found.group(3)}" if found.group(3) else ""
        return f"{kind} {int(found.group(2))}{suffix}"
    if form == "gb_company_number":
        compact = NOT_ID_CHAR.sub("", upper)
        if compact.isdigit() and len(compact) <= 8:
            return compact.zfill(8)
        if len(compact) <= 8 and compact[:2].isalpha() and compact[2:].isdigit() and compact[2:]:
            return compact[:2] + compact[2:].zfill(6)
        return None
    raise ValueError(f"unknown canonical form {form!r}")


# The canonical form of the values a stdnum module accepts, where it is not its compact form.
MODULE_CANONICAL = {"de.handelsregisternummer": "de_register"}


def check_identifier(value: str | None, modules: tuple[str, ...], patterns: tuple = ()
                     ) -> tuple[str | None, str | None, bool, bool]:
    """(canonical ID, type, valid, canonical) — the first stdnum module whose checks pass decides
    the type, then `patterns` (IdPattern: kind, RE2 pattern, canonical form) by format alone:
    "hrb  230404" -> ("HRB 230404", "de_hr", True, True).
    """
    value = nfkc(value)
    if value is None:
        return None, None, True, True
    for module in modules:
        fast = FAST_CHECKS.get(module)
        if fast is not None and value.isascii():
            compact = fast(value)
            if compact is not None:
                return compact, module.replace(".", "_"), True, True
            continue
        mod = _stdnum(module)
        if mod.is_valid(value):
            compact = mod.compact(value)
            form = MODULE_CANONICAL.get(module)
            canonical = canonical_identifier(compact, form) if form else compact
            return canonical or compact, module.replace(".", "_"), True, canonical is not None
    normalised = " ".join(value.upper().split())
    for pattern in patterns:
        canonical = canonical_identifier(value, pattern.canonical)
        regex = re2_compile(pattern.pattern)
        if regex.fullmatch(normalised) or (canonical is not None and regex.fullmatch(canonical)):
            return canonical or normalised, pattern.kind, True, canonical is not None
    return None, None, False, True


# --- the same checks as python-stdnum, with its slow parts cached (tests compare both) ----------

@lru_cache(maxsize=100_000)
def _cn_birth_place_known(prefix: str, year: int) -> bool:
    """stdnum's birth place check depends only on the region code and the birth year."""
    from stdnum.cn import ric
    from stdnum.exceptions import ValidationError

    try:
        ric.get_birth_place(f"{prefix}{year:04d}01010000")
    except ValidationError:
        return False
    return True


def _cn_ric(value: str) -> str | None:
    """stdnum.cn.ric.validate for ASCII input: compact number when valid, else None."""
    from stdnum.cn import ric

    number = value.upper().strip()
    if len(number) != 18 or not number[:-1].isdigit() or number[-1] != ric.calc_check_digit(number):
        return None
    try:
        birth = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return number if _cn_birth_place_known(number[:6], birth.year) else None


FAST_CHECKS: dict[str, Callable[[str], str | None]] = {"cn.ric": _cn_ric}
