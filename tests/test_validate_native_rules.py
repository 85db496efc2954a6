"""Row rules evaluated on Arrow (validate.NATIVE_RULES) fail exactly the rows GE fails.

GE runs a suite through pandas (`isin`, `str.contains` = Python `re.search`, nulls skipped), so
Unicode digits and spaces, blanks, new lines and nulls must come out the same either way."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ingest.errors import SourceRejected
from pipelines.ingest.validate import _suite_failures, is_native

HOSTILE = ["2026", "２０２６", " 2026", "", None, "20261", "x\n2026", "\u00a0", "NBSP\u00a0x",
           "é", "12\u0663\u0664", "Y", "y", "N ", "2026\n", "   "]
# one rule per column (a GE suite holds one expectation of a type per column)
COLUMNS = ["a", "b", "c", "d", "e", "f", "g"]
SUITE = {"expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "b", "value_set": ["Y", "N"]}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "c", "regex": r"^\d{4}$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "d", "regex": r"^\S+$",
                                                               "mostly": 0.5}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "e", "regex": r"^\w+$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "f", "regex": "^2026$"}},
    # not native (a number in the set): GE evaluates it, in the same run
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "g", "value_set": ["2026", 7]}},
]}


def _raw(tmp_path, values: list) -> object:
    n = len(values)
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table({**{c: pa.array(values[i:] + values[:i], pa.string())
                                for i, c in enumerate(COLUMNS)},
                             "_source_file": pa.array(["f.csv"] * n),
                             "_row_number": pa.array(range(2, n + 2), pa.int64()),
                             "_malformed": pa.array([None] * n, pa.string())}), path)
    return path


def _failures(tmp_path, suite: dict, native: bool) -> list[tuple]:
    mapping = SimpleNamespace(name="src", suite=lambda: suite)
    tables = list(_suite_failures(mapping, _raw(tmp_path, HOSTILE * 3), COLUMNS, native=native))
    return [tuple(r.values()) for t in tables for r in t.to_pylist()]


def test_native_rules_fail_the_rows_ge_fails(tmp_path):
    assert [is_native(e) for e in SUITE["expectations"]] == [True] * 6 + [False]
    by_ge = _failures(tmp_path, SUITE, native=False)
    native = _failures(tmp_path, SUITE, native=True)
    assert native == by_ge
    rules = {rule for _, _, rule in native}
    assert len(rules) == 7 and len(native) > 40  # every rule failed some rows


def test_a_regex_python_cannot_compile_rejects_the_source_naming_the_rule(tmp_path):
    suite = {"expectations": [{"type": "expect_column_values_to_match_regex",
                               "kwargs": {"column": "a", "regex": "(unclosed"}}]}
    with pytest.raises(SourceRejected) as raised:
        _failures(tmp_path, suite, native=True)
    assert "could not be evaluated" in str(raised.value) and "a" in str(raised.value)


def test_arguments_that_change_which_rows_fail_stay_with_ge():
    assert not is_native({"type": "expect_column_values_to_match_regex",
                          "kwargs": {"column": "a", "regex": "x", "row_condition": 'b=="1"',
                                     "condition_parser": "pandas"}})
    assert not is_native({"type": "expect_column_values_to_be_between",
                          "kwargs": {"column": "a", "min_value": 1}})
