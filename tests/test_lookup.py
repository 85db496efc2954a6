"""`lookup` and `ucv lookup`: one customer's 360° view by any key, ranked when ambiguous."""

from __future__ import annotations

from datetime import date

import pytest
from golden_builders import small_portfolio, write_identify_extras
from typer.testing import CliRunner

from pipelines.golden import build_golden, lookup, publish_warehouse
from pipelines.golden.commands import app
from pipelines.golden.lookup import name_key, normalise_phone
from pipelines.settings import RunPaths


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    base = tmp_path_factory.mktemp("lookup")
    run = small_portfolio(RunPaths.for_run("2026-11-22", base=base / "runs"))
    write_identify_extras(run, history=[  # C8 was merged into C9, which later turned out to be C1
        {"run_id": "2026-11-20", "event": "new", "customer_id": "C8", "related_customer_id": None},
        {"run_id": "2026-11-21", "event": "new", "customer_id": "C9", "related_customer_id": None},
        {"run_id": "2026-11-21", "event": "merged", "customer_id": "C8",
         "related_customer_id": "C9"},
        {"run_id": "2026-11-22", "event": "merged", "customer_id": "C9",
         "related_customer_id": "C1"}])
    build_golden(run, date(2026, 11, 22))
    return publish_warehouse(run, base / "wh")


def ids(found):
    return [row["customer_id"] for row in found]


def test_phone_in_any_format_is_normalised_like_the_pipeline(warehouse):
    assert normalise_phone("0151-2345678")[0] == "+491512345678"
    for written in ("+49 151 2345678", "0151 2345678", "0049 151 2345678", "(0151) 234 56 78"):
        found = lookup(phone=written, warehouse=warehouse)
        assert ids(found) == ["C1"], written
    # one result is a full 360° row
    assert found[0]["active_policies"] == ["P-DE-1"] and "phone" in found[0]["match_reason"]


def test_email_finds_a_customer_by_any_of_its_addresses(warehouse):
    assert ids(lookup(email=" T.Mueller@Example.DE ", warehouse=warehouse)) == ["C1"]  # not golden
    assert ids(lookup(email="tom@example.de", warehouse=warehouse)) == ["C1"]


def test_policy_lists_everyone_on_it_policyholder_first(warehouse):
    found = lookup(policy="p-de-1", warehouse=warehouse)
    assert ids(found) == ["C1", "C2"]
    assert "beneficiary" in found[1]["match_reason"]


def test_name_ranks_several_candidates(warehouse):
    assert name_key("Müller, Thomas") == "muellerthomas"
    assert ids(lookup(name="Thomas Müller", warehouse=warehouse))[0] == "C1"
    assert ids(lookup(name="MUELLER THOMAS", warehouse=warehouse))[0] == "C1"
    # the same person written in hanzi and in pinyin: both leads, the more certain one first
    assert sorted(ids(lookup(name="王丽", warehouse=warehouse))) == ["C4", "C5"]
    family = ids(lookup(name="Müller", warehouse=warehouse))
    assert {"C1", "C2"} <= set(family)


def test_a_hanzi_name_is_compared_part_by_part_as_ingest_splits_it():
    from pipelines.golden.lookup import lookup_key

    # family name first (a compound surname whole), each part folded as ingest folds it
    assert lookup_key(None, None, None, None, "王建国") == ("name", ["wangjianguo", "wang", "jianguo"])
    assert lookup_key(None, None, None, None, "欧阳娜娜")[1][1:] == ["ouyang", "nana"]
    assert lookup_key(None, None, None, None, "单伟")[1][1:] == ["shan", "wei"]  # the surname reading
    assert lookup_key(None, None, None, None, "王")[1] == ["wang", "wang", "wang"]  # one character
    assert lookup_key(None, None, None, None, "Wang Wei")[1] == ["wangwei", "wang", "wei"]


def test_id_and_unknown_keys(warehouse):
    assert ids(lookup("C3", warehouse=warehouse)) == ["C3"]
    merged = lookup("C9", warehouse=warehouse)  # an ID merged away finds who holds it now
    assert ids(merged) == ["C1"] and merged[0]["match_reason"] == "merged from C9"
    chained = lookup("C8", warehouse=warehouse)  # merged twice: C8 into C9 into C1
    assert ids(chained) == ["C1"] and chained[0]["match_reason"] == "merged from C8"
    assert lookup("NOPE", warehouse=warehouse) == []
    assert lookup(phone="not a phone", warehouse=warehouse) == []
    with pytest.raises(ValueError, match="exactly one"):
        lookup("C1", email="x@y.de", warehouse=warehouse)


def test_cli_prints_the_360_view_and_ranked_candidates(warehouse):
    runner = CliRunner()
    single = runner.invoke(app, ["lookup", "--phone", "+49 151 2345678",
                                 "--warehouse", str(warehouse)])
    assert single.exit_code == 0, single.output
    assert "C1" in single.output and "P-DE-1" in single.output and "candidates" not in single.output
    several = runner.invoke(app, ["lookup", "--policy", "P-DE-1", "--warehouse", str(warehouse)])
    assert several.exit_code == 0 and "2 candidates" in several.output
    missing = runner.invoke(app, ["lookup", "--email", "x@y.de", "--warehouse", str(warehouse)])
    assert missing.exit_code == 1 and "no customer found" in missing.output


def test_name_scans_skip_only_values_that_cannot_reach_the_cutoff():
    """The service's name index scores only the values an exact bound (characters in common)
    lets reach the cutoff (serve.index._Vocabulary._reachable): on random names, near copies and
    anagrams, the scores equal a scan of the whole vocabulary, and the bound does prune."""
    import random

    import numpy as np
    import pyarrow as pa
    from rapidfuzz.distance import JaroWinkler
    from rapidfuzz.process import cdist

    from pipelines.serve.index import _Vocabulary

    rng = random.Random(5)

    def word(n: int) -> str:
        return "".join(rng.choice("aaeeinorstuwbcdhlmz09") for _ in range(n))

    base = [word(rng.randint(1, 24)) for _ in range(4000)]
    near = [v[: max(1, len(v) - rng.randint(0, 3))] + word(rng.randint(0, 3)) for v in base[:1500]]
    anagrams = ["".join(rng.sample(v, len(v))) for v in base[:500]]
    values = base + near + anagrams
    vocabulary = _Vocabulary(pa.chunked_array([pa.array(values + ["", None])]))
    pruned = 0
    for cutoff in (0.88, 0.88 / 0.95, 0.76, 0.5):
        for _ in range(12):
            queries = [rng.choice(values) for _ in range(rng.randint(1, 6))] + [word(3), "ä" + word(9), ""]
            whole = cdist(queries, vocabulary.values, scorer=JaroWinkler.normalized_similarity,
                          score_cutoff=cutoff, dtype=np.float64)
            for i, got in enumerate(vocabulary.scores_of_each(queries, cutoff)):
                assert np.array_equal(got, whole[i] if queries[i] else np.zeros(len(vocabulary.values))), \
                    (queries[i], cutoff)
            kept = vocabulary._reachable([q for q in queries if q], cutoff)
            pruned += kept is not None and len(kept) < len(vocabulary.values)
    assert pruned >= 10
    # values with other characters: the bound would not count them, so everything is scored
    assert _Vocabulary(pa.chunked_array([pa.array(["müller", "anna"])]))._reachable(["anna"], 0.88) is None
