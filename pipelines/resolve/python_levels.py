"""Splink's comparison levels of one model evaluated in Python, for a handful of pairs at a time.

Real-time resolution scores a new record against ~20 stored ones. In DuckDB every execution of
Splink's comparison-vector statement costs ~0.1 ms per CASE branch whatever the row count (the
person model has ~50 branches): ~20 ms per query, most of a request. Here the very same SQL — the
`CASE WHEN ... THEN <level>` list Splink generates for the model (`gamma_*` columns) — is parsed
with sqlglot (Splink's own SQL library) and compiled once into Python closures with DuckDB's
semantics: three-valued logic, NULL in -> NULL out, strings compared by their UTF-8 bytes as
DuckDB's similarity functions do (rapidfuzz on bytes gives DuckDB's figures exactly; checked in
tests/test_python_levels.py), lists as DuckDB's list functions treat them.

`compile_levels` returns None, naming the construct, when the SQL holds anything outside the
supported set (a custom comparison with another function): the caller then keeps DuckDB. The
real-time scorer also checks at start-up that the closures give DuckDB's levels on real pairs.

The same compiler serves two other one-row statements of real time: the model input row
(`compile_row_query`) and the canonical SELECT of a source record being standardized
(`compile_projections`, used by `standardize.records.compile_canonical_select`, which checks
its rows against DuckDB's statement before relying on it). A value a closure cannot decide
exactly as DuckDB would (a cast from text, `upper('ß')`) raises `Unsupported` at run time and
the caller asks DuckDB.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Fn = Callable[[Row, Row], Any]


class Unsupported(Exception):
    """A construct of the comparison SQL this evaluator does not implement."""


class NearTie(Exception):
    """A similarity too close to a threshold to decide here: rapidfuzz and DuckDB compute the same
    figure in another order and may differ in the last bit (0.8083333333333333 against
    ...335), so a value within 1e-9 of the threshold is left to DuckDB's own SQL."""


_TIE = 1e-9


@dataclass(frozen=True)
class CompiledLevels:
    """gamma column -> a function of (stored row, new row) giving its comparison level."""

    functions: tuple[tuple[str, Fn], ...]

    def levels(self, left: Row, right: Row) -> dict[str, int]:
        return {name: fn(left, right) for name, fn in self.functions}


def compile_levels(comparison_columns_sql: str) -> tuple[CompiledLevels | None, str | None]:
    """(compiled levels, None), or (None, why not) for Splink's comparison-vector select list
    (`settings._columns_to_select_for_comparison_vector_values`)."""
    import sqlglot
    from sqlglot import exp

    try:
        select = sqlglot.parse_one(f"SELECT {comparison_columns_sql}", dialect="duckdb")
    except sqlglot.errors.ParseError as err:
        return None, f"cannot parse the comparison SQL: {err}"
    functions = []
    try:
        for projection in select.expressions:
            if not isinstance(projection, exp.Alias) or not projection.alias.startswith("gamma_"):
                continue  # pass-through columns (unique ids, tf columns) are read from the rows
            functions.append((projection.alias, _compile(projection.this)))
    except Unsupported as err:
        return None, str(err)
    if not functions:
        return None, "no gamma_ columns in the comparison SQL"
    return CompiledLevels(tuple(functions)), None


def compile_projections(sql: str, column: Callable[[Any], Fn]) -> tuple[list[tuple[str, Fn]] | None, str | None]:
    """([(output name, function of (left, right))] for each item of the top SELECT list of `sql`,
    None) or (None, why not); `column(node)` resolves a column reference (sqlglot's Column) to a
    function of the two rows. The FROM clause is the caller's to honour."""
    import sqlglot
    from sqlglot import exp

    try:
        select = sqlglot.parse_one(sql, dialect="duckdb")
        if not isinstance(select, exp.Select):
            return None, "not a SELECT"
        out = []
        for projection in select.expressions:
            if not isinstance(projection, exp.Alias):
                return None, f"an unnamed output column {projection.sql(dialect='duckdb')[:60]!r}"
            out.append((projection.alias, _compile(projection.this, column)))
    except Unsupported as err:
        return None, str(err)
    except sqlglot.errors.ParseError as err:
        return None, f"cannot parse: {err}"
    return out, None


# --- the compiler: one closure per SQL node -------------------------------------------------

def _compile(node, col: Callable[[Any], Fn] | None = None) -> Fn:
    col = col or _column
    from sqlglot import exp

    if isinstance(node, exp.Paren):
        return _compile(node.this, col)
    if isinstance(node, (exp.Column, exp.Identifier)):
        return col(node)
    if isinstance(node, exp.Literal):
        value: Any = node.this if node.is_string else _number(node.this)
        return lambda left, right: value
    if isinstance(node, exp.Neg):
        inner = _compile(node.this, col)
        return lambda left, right: (None if (v := inner(left, right)) is None else -v)
    if isinstance(node, exp.Array):
        items = [_compile(e, col) for e in node.expressions]
        return lambda left, right: [item(left, right) for item in items]
    if isinstance(node, exp.Cast):
        return _cast(node, col)
    if isinstance(node, exp.Boolean):
        flag = bool(node.this)
        return lambda left, right: flag
    if isinstance(node, exp.Null):
        return lambda left, right: None
    if isinstance(node, exp.Case):
        return _case(node, col)
    if isinstance(node, exp.And):
        return _and(_compile(node.this, col), _compile(node.expression, col))
    if isinstance(node, exp.Or):
        return _or(_compile(node.this, col), _compile(node.expression, col))
    if isinstance(node, exp.Not):
        inner = _compile(node.this, col)
        return lambda left, right: (None if (v := inner(left, right)) is None else not v)
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise Unsupported(f"IS {node.expression.sql()} (only IS NULL)")
        inner = _compile(node.this, col)
        return lambda left, right: inner(left, right) is None
    if type(node) in _COMPARISONS:
        return _comparison(_COMPARISONS[type(node)], _compile(node.this, col), _compile(node.expression, col))
    if isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest"):
            raise Unsupported("IN over a subquery")
        return _in(_compile(node.this, col), [_compile(e, col) for e in node.expressions])
    if isinstance(node, exp.Nullif):
        return _nullif(_compile(node.this, col), _compile(node.expression, col))
    if isinstance(node, exp.ConcatWs):
        return _concat_ws([_compile(e, col) for e in node.expressions])
    if isinstance(node, exp.ArrayFilter):
        return _list_filter(node, col)
    if isinstance(node, exp.Transform):
        return _list_transform(node, col)
    if isinstance(node, exp.Coalesce):
        parts = [_compile(node.this, col), *(_compile(e, col) for e in node.expressions)]
        return _coalesce(parts)
    if isinstance(node, exp.DPipe):
        return _strict(_text_concat, [_compile(node.this, col), _compile(node.expression, col)])
    if isinstance(node, exp.RegexpReplace):
        return _regexp_replace(node, col)
    name, args = _function(node)
    if name in _FUNCTIONS:
        arity, impl = _FUNCTIONS[name]
        if len(args) not in arity:
            raise Unsupported(f"{name} with {len(args)} arguments")
        compiled = [_compile(a, col) for a in args]
        return _strict(impl, compiled)
    raise Unsupported(f"{node.sql(dialect='duckdb')[:80]!r} ({type(node).__name__})")


def _function(node) -> tuple[str, list]:
    """A function call's DuckDB name and its arguments, whichever sqlglot class parsed it."""
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return node.name.lower(), list(node.expressions)
    named = {exp.JarowinklerSimilarity: "jaro_winkler_similarity", exp.Levenshtein: "levenshtein",
             exp.ArrayOverlaps: "list_has_any", exp.ArrayContains: "list_contains",
             exp.Contains: "contains", exp.Length: "len", exp.Year: "year", exp.Month: "month",
             exp.Day: "day", exp.ArrayToString: "array_to_string", exp.Replace: "replace",
             exp.ArraySort: "list_sort", exp.ArrayContainsAll: "list_has_all", exp.Lower: "lower",
             exp.Upper: "upper", exp.Trim: "trim", exp.TimeToStr: "strftime", exp.Chr: "chr",
             exp.SplitPart: "split_part", exp.Split: "string_split", exp.Substring: "substring",
             exp.StartsWith: "starts_with", exp.Left: "left", exp.ArrayDistinct: "list_distinct"}
    for cls, name in named.items():
        if type(node) is cls:
            if cls is exp.Levenshtein and any(node.args.get(k) for k in ("ins_cost", "del_cost", "sub_cost", "max_dist")):
                raise Unsupported("levenshtein with costs")
            if cls is exp.ArraySort and node.args.get("expression") is not None:
                raise Unsupported("list_sort with an order argument")
            if cls is exp.Replace:
                return name, [node.this, node.expression, node.args.get("replacement")]
            if cls is exp.Trim:
                if node.expression is not None or node.args.get("position"):
                    raise Unsupported("trim of given characters or one side")
                return name, [node.this]
            if cls is exp.TimeToStr:
                return name, [node.this, node.args["format"]]
            if cls is exp.Chr:
                return name, list(node.expressions)
            if cls is exp.SplitPart:
                return name, [node.this, node.args["delimiter"], node.args["part_index"]]
            if cls is exp.Substring:
                return name, [a for a in (node.this, node.args.get("start"), node.args.get("length"))
                              if a is not None]
            args = [node.this, *([node.expression] if node.args.get("expression") is not None else [])]
            return name, args
    raise Unsupported(f"{node.sql(dialect='duckdb')[:80]!r} ({type(node).__name__})")


def _column(node) -> Fn:
    name = node.name
    if node.table:
        raise Unsupported(f"qualified column {node.sql()}")
    if name.endswith("_l"):
        key = name[:-2]
        return lambda left, right: left.get(key)
    if name.endswith("_r"):
        key = name[:-2]
        return lambda left, right: right.get(key)
    raise Unsupported(f"column {name} is neither _l nor _r")


def _cast(node, col) -> Fn:
    """CAST to text or a text list (what Splink's and this project's SQL write for defaults)."""
    from sqlglot import exp

    inner = _compile(node.this, col)
    target = node.to
    text = (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR)
    if target.this == exp.DataType.Type.DATE:
        def to_date(left: Row, right: Row) -> Any:
            value = inner(left, right)
            if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
                return value
            if isinstance(value, str) and _ISO_DATE.fullmatch(value):
                try:
                    return dt.date.fromisoformat(value)
                except ValueError:  # 2020-02-30: NULL from TRY_CAST, an error from CAST
                    if isinstance(node, exp.TryCast):
                        return None
            raise Unsupported(f"{value!r} cast to a date")  # other spellings: DuckDB's parser decides
        return to_date
    if target.this in text:
        def to_text(left: Row, right: Row) -> Any:
            value = inner(left, right)
            if value is None or isinstance(value, str):
                return value
            if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                return value.isoformat()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                raise Unsupported("a number cast to text")  # DuckDB's float formatting differs
            raise Unsupported(f"a {type(value).__name__} cast to text")
        return to_text
    accept = _same_type_casts().get(target.this)
    if accept is not None:
        def to_same(left: Row, right: Row) -> Any:
            value = inner(left, right)
            if value is None:
                return None
            converted = accept(value)
            if converted is _NOT_CAST:  # text to a number, a boolean to an integer...: DuckDB's rules
                raise Unsupported(f"a {type(value).__name__} cast to {target.sql(dialect='duckdb')}")
            return converted
        return to_same
    if target.this == exp.DataType.Type.ARRAY and target.expressions and target.expressions[0].this in text:
        def to_texts(left: Row, right: Row) -> Any:
            value = inner(left, right)
            if value is None:
                return None
            if all(v is None or isinstance(v, str) for v in value):
                return list(value)
            raise Unsupported("a list of non-text values cast to text[]")
        return to_texts
    raise Unsupported(f"CAST to {target.sql(dialect='duckdb')}")


_NOT_CAST = object()


def _as_boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else _NOT_CAST


def _as_integer(value: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else _NOT_CAST


def _as_double(value: Any) -> Any:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
        return float(value)  # exact, as DuckDB's BIGINT -> DOUBLE
    return _NOT_CAST


def _as_timestamp(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is None else _NOT_CAST
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)  # DuckDB: midnight of the date
    return _NOT_CAST


@functools.cache
def _same_type_casts() -> dict:
    """CASTs of a value that already has the target type (or widens exactly): what the canonical
    SELECT writes to pin each column's type. Anything else stays DuckDB's to decide."""
    from sqlglot import exp

    t = exp.DataType.Type
    casts: dict = {t.BOOLEAN: _as_boolean, t.BIGINT: _as_integer, t.INT: _as_integer,
                   t.DOUBLE: _as_double, t.TIMESTAMP: _as_timestamp}
    if hasattr(t, "TIMESTAMPNTZ"):
        casts[t.TIMESTAMPNTZ] = _as_timestamp
    return casts


def _number(text: str) -> float | int:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _case(node, col) -> Fn:
    branches = [(_compile(i.this, col), _compile(i.args["true"], col)) for i in node.args.get("ifs") or []]
    default = _compile(node.args["default"], col) if node.args.get("default") is not None else None
    if node.this is not None:
        raise Unsupported("CASE <expr> WHEN (simple CASE)")

    def case(left: Row, right: Row) -> Any:
        for condition, value in branches:
            if condition(left, right) is True:  # NULL is not true
                return value(left, right)
        return default(left, right) if default is not None else None
    return case


def _and(a: Fn, b: Fn) -> Fn:
    def both(left: Row, right: Row) -> bool | None:
        x = a(left, right)
        if x is False:
            return False
        y = b(left, right)
        if y is False:
            return False
        return None if x is None or y is None else True
    return both


def _or(a: Fn, b: Fn) -> Fn:
    def either(left: Row, right: Row) -> bool | None:
        x = a(left, right)
        if x is True:
            return True
        y = b(left, right)
        if y is True:
            return True
        return None if x is None or y is None else False
    return either


def _comparison(op: Callable[[Any, Any], bool], a: Fn, b: Fn) -> Fn:
    def compare(left: Row, right: Row) -> bool | None:
        x, y = a(left, right), b(left, right)
        if x is None or y is None:
            return None
        if (isinstance(x, float) or isinstance(y, float)) and abs(x - y) <= _TIE:
            raise NearTie(f"{x!r} against {y!r}")
        return op(_comparable(x), _comparable(y))
    return compare


def _comparable(value: Any) -> Any:
    # DuckDB compares a DATE with a TIMESTAMP as timestamps; lists element by element (NULLs equal)
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    return value


def _nullif(a: Fn, b: Fn) -> Fn:
    def nullif(left: Row, right: Row) -> Any:
        x = a(left, right)
        if x is None:
            return None
        y = b(left, right)
        return None if y is not None and _comparable(x) == _comparable(y) else x
    return nullif


def _concat_ws(parts: list[Fn]) -> Fn:
    separator, rest = parts[0], parts[1:]

    def concat(left: Row, right: Row) -> Any:
        sep = separator(left, right)
        if sep is None:
            return None
        values = [p(left, right) for p in rest]
        if any(v is not None and not isinstance(v, str) for v in values):
            raise Unsupported("concat_ws of a non-text value")
        return sep.join(v for v in values if v is not None)
    return concat


def _over_items(node, col, what: str) -> Callable[[Row, Row], list[tuple[Any, Any]] | None]:
    """For list_filter / list_transform(<list>, lambda x: <body>): a function giving each item of
    the list with the lambda's value for it (None for a NULL list)."""
    from sqlglot import exp

    function = node.expression
    if not isinstance(function, exp.Lambda) or len(function.expressions) != 1:
        raise Unsupported(f"{what} without a one-parameter lambda")
    parameter = function.expressions[0].name
    slot = "\x00" + parameter  # cannot clash with a column name

    def lambda_col(n) -> Fn:
        if n.name == parameter and (isinstance(n, exp.Identifier) or not n.table):
            return lambda left, right: left[slot]
        return col(n)
    values, body = _compile(node.this, col), _compile(function.this, lambda_col)

    def each(left: Row, right: Row) -> list[tuple[Any, Any]] | None:
        items = values(left, right)
        if items is None:
            return None
        scope = dict(left)
        out = []
        for item in items:
            scope[slot] = item
            out.append((item, body(scope, right)))
        return out
    return each


def _list_filter(node, col) -> Fn:
    each = _over_items(node, col, "list_filter")

    def list_filter(left: Row, right: Row) -> Any:
        pairs = each(left, right)
        return None if pairs is None else [item for item, keep in pairs if keep is True]
    return list_filter


def _list_transform(node, col) -> Fn:
    each = _over_items(node, col, "list_transform")

    def list_transform(left: Row, right: Row) -> Any:
        pairs = each(left, right)
        return None if pairs is None else [value for _, value in pairs]
    return list_transform


def _in(needle: Fn, haystack: list[Fn]) -> Fn:
    def within(left: Row, right: Row) -> bool | None:
        x = needle(left, right)
        if x is None:
            return None
        saw_null = False
        for candidate in haystack:
            y = candidate(left, right)
            if y is None:
                saw_null = True
            elif _comparable(x) == _comparable(y):
                return True
        return None if saw_null else False
    return within


def _coalesce(parts: list[Fn]) -> Fn:
    def first(left: Row, right: Row) -> Any:
        for part in parts:
            value = part(left, right)
            if value is not None:
                return value
        return None
    return first


def _text_concat(a: Any, b: Any) -> str:
    if not isinstance(a, str) or not isinstance(b, str):
        raise Unsupported("|| of non-text values")  # lists concatenate, numbers are cast: DuckDB's
    return a + b


_REWRITE_PART = re.compile(r"\\([0-9\\])|([^\\]+)")


def _regexp_replace(node, col) -> Fn:
    """DuckDB's regexp_replace with a constant pattern and rewrite, through RE2 (DuckDB's own
    engine, google-re2): every match with 'g', else the first one; `\\1` a group, `\\\\` a backslash."""
    import re2
    from sqlglot import exp

    pattern, rewrite = node.expression, node.args.get("replacement")
    modifiers = node.args.get("modifiers")
    if not (isinstance(pattern, exp.Literal) and pattern.is_string and isinstance(rewrite, exp.Literal)
            and rewrite.is_string):
        raise Unsupported("regexp_replace with a pattern or rewrite that is not a constant")
    if modifiers is not None and not (isinstance(modifiers, exp.Literal) and modifiers.this in ("g", "")):
        raise Unsupported("regexp_replace with options other than 'g'")
    if "." in pattern.this or "(?" in pattern.this:
        raise Unsupported("regexp_replace with '.' or inline flags")  # DuckDB's line options decide
    parts: list[tuple[int | None, str]] = []  # (group, "") or (None, literal text)
    position = 0
    for match in _REWRITE_PART.finditer(rewrite.this):
        if match.start() != position:
            raise Unsupported(f"regexp_replace rewrite {rewrite.this!r}")
        position = match.end()
        parts.append((int(match.group(1)), "") if match.group(1) and match.group(1).isdigit()
                     else (None, match.group(1) or match.group(2)))
    if position != len(rewrite.this):
        raise Unsupported(f"regexp_replace rewrite {rewrite.this!r}")
    compiled = re2.compile(pattern.this)
    count = 0 if modifiers is not None and modifiers.this == "g" else 1

    def expand(match) -> str:
        return "".join(match.group(g) or "" if g is not None else text for g, text in parts)

    def replace(text: Any) -> str:
        if not isinstance(text, str):
            raise Unsupported("regexp_replace of a non-text value")
        return compiled.sub(expand, text, count=count)
    return _strict(replace, [_compile(node.this, col)])


def _strict(impl: Callable[..., Any], args: list[Fn]) -> Fn:
    """A function that returns NULL when an argument is NULL (as these DuckDB functions do)."""
    def call(left: Row, right: Row) -> Any:
        values = [a(left, right) for a in args]
        if any(v is None for v in values):
            return None
        return impl(*values)
    return call


_COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {}


def _init_comparisons() -> None:
    import operator

    from sqlglot import exp

    _COMPARISONS.update({exp.EQ: operator.eq, exp.NEQ: operator.ne, exp.GT: operator.gt,
                         exp.GTE: operator.ge, exp.LT: operator.lt, exp.LTE: operator.le})


_init_comparisons()


# --- DuckDB's functions ----------------------------------------------------------------------

def _bytes(text: str) -> bytes:
    return text.encode("utf-8")


def _jaro_winkler(a: str, b: str) -> float:
    from rapidfuzz.distance import JaroWinkler

    if not a and not b:
        return 0.0  # DuckDB: two empty strings are 0.0 (rapidfuzz says 1.0)
    return JaroWinkler.similarity(_bytes(a), _bytes(b))


def _jaro(a: str, b: str) -> float:
    from rapidfuzz.distance import Jaro

    if not a and not b:
        return 0.0
    return Jaro.similarity(_bytes(a), _bytes(b))


def _levenshtein(a: str, b: str) -> int:
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(_bytes(a), _bytes(b))


def _damerau_levenshtein(a: str, b: str) -> int:
    from rapidfuzz.distance import DamerauLevenshtein

    return DamerauLevenshtein.distance(_bytes(a), _bytes(b))


def _list_has_any(a: list, b: list) -> bool:
    right = {v for v in b if v is not None}
    return any(v is not None and v in right for v in a)


def _list_has_all(a: list, b: list) -> bool:
    left = {v for v in a if v is not None}
    return all(v is None or v in left for v in b)


def _list_contains(a: list, b: Any) -> bool:
    return any(v is not None and v == b for v in a)


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)):
        return _list_contains(list(a), b)
    return str(b) in str(a)


def _length(a: Any) -> int:
    return len(a)  # a string's characters (code points) or a list's elements, as DuckDB's len


def _list_sort(a: list) -> list:
    present = sorted(v for v in a if v is not None)
    return present + [None] * (len(a) - len(present))  # DuckDB's default: NULLS LAST


def _array_to_string(a: list, sep: str) -> str:
    return sep.join(str(v) for v in a if v is not None)


def _trim(text: str) -> str:
    trimmed = text.strip(" ")
    if trimmed and (trimmed[0].isspace() or trimmed[-1].isspace() or not trimmed[0].isprintable()
                    or not trimmed[-1].isprintable()):
        raise Unsupported("trim next to other white space")  # DuckDB's trim decides (it drops NBSP, keeps tabs)
    return trimmed


def _strftime(value: Any, fmt: str) -> str:
    if not isinstance(value, dt.date) or not _DATE_FORMAT.fullmatch(fmt):
        raise Unsupported(f"strftime({type(value).__name__}, {fmt!r})")
    return value.strftime(fmt)


def _split_part(text: str, sep: str, index: int) -> str:
    if not sep or not isinstance(index, int) or index < 1:
        raise Unsupported("split_part with an empty separator or a non-positive index")
    parts = text.split(sep)
    return parts[index - 1] if index <= len(parts) else ""


def _string_split(text: str, sep: str) -> list[str]:
    if not sep:
        raise Unsupported("string_split with an empty separator")
    return text.split(sep)


def _substring(text: str, start: int, length: int | None = None) -> str:
    if not isinstance(start, int) or start < 1 or (length is not None and (not isinstance(length, int) or length < 0)):
        raise Unsupported("substring from a non-positive start or of a negative length")
    return text[start - 1:] if length is None else text[start - 1:start - 1 + length]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Unsupported(f"a {type(value).__name__} where text is expected")
    return value


def _left(text: Any, count: Any) -> str:
    # DuckDB counts grapheme clusters; on ASCII text those are characters
    if not isinstance(count, int) or count < 0 or not _text(text).isascii():
        raise Unsupported("left of non-ASCII text or by a negative count")
    return text[:count]


def _list_distinct(items: list) -> list:
    # DuckDB drops NULLs; its order is unspecified, so only a sorted use is exact
    seen: dict = {}
    for item in items:
        if item is not None:
            seen.setdefault(item, None)
    return list(seen)


def _same_length(text: str, changed: str, name: str) -> str:
    """Python's full case mapping where it is DuckDB's one-to-one mapping: upper('ß') is 'SS' in
    Python and 'ẞ' in DuckDB, lower('Σ') at a word's end 'ς' and 'σ': DuckDB decides those."""
    if len(changed) != len(text) or (name == "lower" and "Σ" in text):
        raise Unsupported(f"{name} of {text!r}")
    return changed


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_FORMAT = re.compile(r"(%[Ymd]|[-/. ])+")

_FUNCTIONS: dict[str, tuple[tuple[int, ...], Callable[..., Any]]] = {
    "jaro_winkler_similarity": ((2,), _jaro_winkler),
    "jaro_similarity": ((2,), _jaro),
    "levenshtein": ((2,), _levenshtein),
    "damerau_levenshtein": ((2,), _damerau_levenshtein),
    "list_has_any": ((2,), _list_has_any),
    "array_has_any": ((2,), _list_has_any),
    "list_has_all": ((2,), _list_has_all),
    "array_has_all": ((2,), _list_has_all),
    "list_contains": ((2,), _list_contains),
    "array_contains": ((2,), _list_contains),
    "list_has": ((2,), _list_contains),
    "contains": ((2,), _contains),
    "len": ((1,), _length),
    "length": ((1,), _length),
    "year": ((1,), lambda d: d.year),
    "month": ((1,), lambda d: d.month),
    "day": ((1,), lambda d: d.day),
    "replace": ((3,), lambda s, a, b: s.replace(a, b)),
    "list_sort": ((1,), _list_sort),
    "array_sort": ((1,), _list_sort),
    "array_to_string": ((2,), _array_to_string),
    "list_aggr_string_agg": ((2,), _array_to_string),
    "trim": ((1,), _trim),
    "strftime": ((2,), _strftime),
    "chr": ((1,), chr),
    "split_part": ((3,), _split_part),
    "string_split": ((2,), _string_split),
    "substring": ((2, 3), _substring),
    "lower": ((1,), lambda s: _same_length(s, s.lower(), "lower")),
    "upper": ((1,), lambda s: _same_length(s, s.upper(), "upper")),
    "starts_with": ((2,), lambda s, prefix: _text(s).startswith(_text(prefix))),
    "left": ((2,), lambda s, n: _left(s, n)),
    "list_distinct": ((1,), lambda xs: _list_distinct(xs)),
    "list_bool_or": ((1,), lambda xs: None if not (v := [x for x in xs if x is not None]) else any(v)),
}


# --- one record's row through a SELECT (the model input statement) ---------------------------

RowFn = Callable[[Row], Row | None]


def compile_row_query(sql: str, source: str) -> tuple[RowFn | None, str | None]:
    """(function, None) giving the one output row of `sql` for one input row (a dict standing for
    the table `source`), None when a WHERE filters it out; or (None, why not). Handles SELECT
    lists (with *), WITH, subqueries in FROM and a WHERE, over the expressions above."""
    import sqlglot

    try:
        tree = sqlglot.parse_one(sql, dialect="duckdb")
        return _select(tree, source, {}), None
    except Unsupported as err:
        return None, str(err)
    except sqlglot.errors.ParseError as err:
        return None, f"cannot parse: {err}"


def _row_column(node) -> Fn:
    name = node.name
    return lambda row, _: row[name]


def _select(node, source: str, ctes: dict[str, RowFn]) -> RowFn:
    from sqlglot import exp

    if isinstance(node, exp.Subquery):
        return _select(node.this, source, ctes)
    if not isinstance(node, exp.Select) or node.args.get("group") or node.args.get("joins") \
            or node.args.get("having") or node.args.get("distinct"):
        raise Unsupported(f"a query shape: {node.sql(dialect='duckdb')[:60]!r}")
    ctes = dict(ctes)
    with_ = node.args.get("with") or node.args.get("with_")
    for cte in (with_.expressions if with_ is not None else []):
        ctes[cte.alias] = _select(cte.this, source, ctes)
    from_ = node.args.get("from") or node.args.get("from_")
    if from_ is None:
        raise Unsupported("a SELECT without FROM")
    origin = from_.this
    inner: RowFn
    if isinstance(origin, exp.Table) and origin.name in ctes:
        inner = ctes[origin.name]
    elif isinstance(origin, exp.Table) and origin.name == source:
        def inner(row: Row) -> Row | None:
            return row
    elif isinstance(origin, exp.Subquery):
        inner = _select(origin.this, source, ctes)
    else:
        raise Unsupported(f"FROM {origin.sql(dialect='duckdb')[:60]!r}")
    condition = _compile(node.args["where"].this, _row_column) if node.args.get("where") else None
    projections: list[tuple[str | None, Fn | None]] = []
    for projection in node.expressions:
        if isinstance(projection, exp.Star):
            projections.append((None, None))
        elif isinstance(projection, exp.Alias):
            projections.append((projection.alias, _compile(projection.this, _row_column)))
        elif isinstance(projection, exp.Column):
            projections.append((projection.name, _row_column(projection)))
        else:
            raise Unsupported(f"an unnamed output column {projection.sql(dialect='duckdb')[:60]!r}")

    def select(row: Row) -> Row | None:
        here = inner(row)
        if here is None or (condition is not None and condition(here, here) is not True):
            return None
        out: Row = {}
        for name, fn in projections:
            if fn is None:
                out.update(here)
            else:
                out[name] = fn(here, here)  # type: ignore[index]
        return out
    return select
