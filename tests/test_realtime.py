"""Real-time resolution against a small published warehouse built by resolve + identify."""

from __future__ import annotations

import math
import os

import duckdb
import pandas as pd
import pytest

from pipelines.identify import assign_customer_ids
from pipelines.identify.bench import bench_realtime
from pipelines.identify.realtime import RealtimeResolver, resolve_record
from pipelines.resolve import load_linker, load_model, predict_and_cluster, train_models
from pipelines.resolve.config import thresholds
from pipelines.resolve.sample import write_sample
from pipelines.settings import RunPaths


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("realtime")
    records_path, truth_path = write_sample(root / "sample", seed=11)
    models = train_models(records_path, seed=42, models_dir=root / "models")
    run = RunPaths.for_run("2026-03-01", base=root / "runs").ensure()
    (run.staged_dir / "source_records.parquet").write_bytes(records_path.read_bytes())
    predict_and_cluster(run, models=models)
    assign_customer_ids(run, None, overrides_file=root / "overrides.csv")
    warehouse = root / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(f"""
        create table source_records as
        select s.*, m.customer_id
        from read_parquet('{records_path}') s
        join read_parquet('{run.identified_dir / "customer_map.parquet"}') m using (source_record_id)
    """)
    con.close()
    records = pd.read_parquet(records_path).merge(
        pd.read_parquet(run.identified_dir / "customer_map.parquet")[["source_record_id", "customer_id"]])
    resolver = RealtimeResolver(warehouse, models=models)
    return {"warehouse": warehouse, "models": models, "records": records, "resolver": resolver,
            "truth": pd.read_parquet(truth_path)}


def prior_odds(models) -> float:
    p = load_model("person", models)["probability_two_random_records_match"]
    return p / (1 - p)


def stored(published, party_type: str, i: int) -> dict:
    records = published["records"]
    return records[records["party_type"] == party_type].iloc[i].to_dict()


def test_a_known_person_with_a_new_id_and_a_typo_finds_their_customer(published):
    record = stored(published, "person", 7)
    own_customer = record.pop("customer_id")
    record["source_record_id"] = "web:lead-1"
    record["phone_mobile"] = None
    record["given_name_norm"] = record["given_name_norm"][:-1] + "x"
    candidates = published["resolver"].resolve(record, "canonical")
    best = candidates[0]
    assert best.customer_id == own_customer
    assert best.match_weight >= thresholds("person").match
    assert 0.99 < best.match_probability <= 1.0
    # Evidence: every comparison of the model, with its level and match weight.
    model_comparisons = [c["output_column_name"] for c in load_model("person", published["models"])["comparisons"]]
    assert set(best.levels) == set(model_comparisons) and set(best.evidence) <= set(model_comparisons)
    assert best.evidence["national_id"] > 0 and best.evidence["birth_date"] > 0
    assert best.levels["phone_mobile"] == -1  # blank mobile: the null level, no evidence either way
    assert best.match_weight == pytest.approx(
        sum(best.evidence.values()) + math.log2(prior_odds(published["models"])), abs=0.01)
    assert [c.match_weight for c in candidates] == sorted((c.match_weight for c in candidates), reverse=True)
    assert len({c.customer_id for c in candidates}) == len(candidates)


def test_scores_equal_splinks_predict_between_on_all_stored_records(published):
    """The indexed fast path finds the same pairs and weights as Splink's predict_between."""
    records = published["records"]
    persons = records[records["party_type"] == "person"].drop(columns=["customer_id"])
    linker = load_linker("person", persons, models=published["models"])
    customer_of = records.set_index("source_record_id")["customer_id"]
    n_customers = []
    hard = set(published["truth"].loc[published["truth"]["hard_case"].notna(), "source_record_id"])
    persons_with_customer = records[records["party_type"] == "person"]
    # Twins, households, common names: queries that meet several customers; plus ordinary ones.
    queries = [r for r in persons_with_customer.to_dict("records") if r["source_record_id"] in hard][:10]
    queries += persons_with_customer.iloc[::40].to_dict("records")[:5]
    for i, record in enumerate(queries):
        record.pop("customer_id")
        record["source_record_id"] = f"web:lead-{i}"
        record["phone_mobile"] = None
        new = pd.DataFrame([record])
        reference = linker.match(new)
        reference["customer_id"] = reference["unique_id_l"].map(customer_of)
        expected = reference.groupby("customer_id")["match_weight"].max().sort_values(ascending=False)
        got = published["resolver"].resolve(record, "canonical", top_k=50)
        assert [c.customer_id for c in got] == list(expected.index)
        assert [c.match_weight for c in got] == pytest.approx(list(expected.values), abs=1e-9)
        n_customers.append(len(expected))
    assert max(n_customers) >= 2  # some queries meet several customers (households, shared keys)


@pytest.mark.parametrize("party_type", ["person", "organization"])
def test_fast_path_pairs_equal_predict_between_with_tf_and_a_rescaled_prior(published, monkeypatch, party_type):
    """Every pair the fast path scores (prepared SQL for the levels, weights in Python) equals
    Splink's predict_between over the same stored records: levels, term-frequency adjustments,
    weights and probabilities, with the prior rescaled to the stored record count (scale_prior)."""
    import pyarrow as pa

    import pipelines.resolve.realtime as linking
    from pipelines.identify.realtime import _PartyScorer
    from pipelines.resolve.predict import load_training_profile

    records = published["records"]
    party = records[records["party_type"] == party_type]
    # trained on a third of these records: scale_prior lowers the prior for the stored ones
    trained = load_training_profile(party_type, published["models"]) or {}
    monkeypatch.setattr(linking, "load_training_profile",
                        lambda p, models=None: {**trained, "training_records": len(party) // 3})
    scorer = _PartyScorer(party_type, pa.Table.from_pandas(party, preserve_index=False), published["models"],
                          max_candidates=100_000)
    assert scorer.fast_input and scorer.fast_scoring
    linker = load_linker(party_type, party.drop(columns=["customer_id"]), models=published["models"])
    prior = scorer.settings["probability_two_random_records_match"]
    assert prior == linker.model["probability_two_random_records_match"]
    assert prior < load_model(party_type, published["models"])["probability_two_random_records_match"]
    hard = set(published["truth"].loc[published["truth"]["hard_case"].notna(), "source_record_id"])
    queries = [r for r in party.to_dict("records") if r["source_record_id"] in hard][:8]
    queries += party.iloc[::25].to_dict("records")[:8]
    blanked = "phone_mobile" if party_type == "person" else "email"
    n_pairs = n_tf_adjusted = 0
    for i, record in enumerate(queries):
        record.pop("customer_id")
        record["source_record_id"] = f"web:lead-{i}"
        record[blanked] = None
        reference = linker.match(pd.DataFrame([record]))
        got = {p["unique_id_l"]: p for p in scorer.pairs(record)}
        assert sorted(got) == sorted(reference["unique_id_l"])
        for expected in reference.to_dict("records"):
            mine = got[expected["unique_id_l"]]
            assert mine["match_weight"] == pytest.approx(expected["match_weight"], abs=1e-9)
            assert mine["match_probability"] == pytest.approx(expected["match_probability"], abs=1e-12)
            assert all(mine[c] == expected[c] for c in expected if c.startswith("gamma_"))
            n_tf_adjusted += any(mine[c.mw_tf_adj] != 0 for c in scorer.scorer.comparisons if c.tf)
        n_pairs += len(reference)
    assert n_pairs >= 2 * len(queries) and n_tf_adjusted > 0


def test_a_sales_lead_scores_as_predict_between_scores_its_standardized_record(published):
    """The request path (mapping -> dict -> fast path) against predict_between on the same
    standardized record."""
    resolver = published["resolver"]
    records = published["records"]
    persons = records[records["party_type"] == "person"]
    linker = load_linker("person", persons.drop(columns=["customer_id"]), models=published["models"])
    for i in (20, 41, 77):
        record = stored(published, "person", i)
        lead = {"lead_id": f"L0999{i:04d}", "created_at": "2026-03-14 09:12:55", "channel": "web",
                "lead_type": "person", "first_name": record["given_name_norm"].title(),
                "last_name": record["family_name_norm"].title(), "email": record["email"],
                "zip": record["postcode"], "city": record["city"], "country": record["country"],
                "birth_date": record["birth_date"].strftime("%d.%m.%Y")}
        canonical = resolver.standardize_record(lead, "sales")
        reference = linker.match(resolver.standardize(lead, "sales"))
        got = {p["unique_id_l"]: p for p in resolver._parties["person"].pairs(canonical)}
        assert len(reference) > 0 and sorted(got) == sorted(reference["unique_id_l"])
        for expected in reference.to_dict("records"):
            assert got[expected["unique_id_l"]]["match_weight"] == pytest.approx(expected["match_weight"], abs=1e-9)


def test_concurrent_resolves_answer_what_one_at_a_time_answers(published):
    """Each request takes a cursor of its own: threads do not see each other's candidates."""
    from concurrent.futures import ThreadPoolExecutor

    resolver = published["resolver"]
    records = published["records"].drop(columns=["customer_id"]).iloc[::7].head(24).to_dict("records")
    for i, record in enumerate(records):
        record["source_record_id"] = f"web:concurrent-{i}"

    def answer(record):
        return [(c.customer_id, c.match_weight, c.n_records_matched) for c in resolver.resolve(record, "canonical")]

    alone = [answer(r) for r in records]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            assert list(pool.map(answer, records)) == alone


def test_an_unknown_person_matches_nobody_strongly(published):
    record = stored(published, "person", 3)
    record.pop("customer_id")
    record.update(source_record_id="web:stranger", given_name_norm="zebulon", given_name_canonical="zebulon",
                  family_name_norm="quixote", national_id=None, phone_mobile="+4915799999999",
                  email="zq@example.org", birth_date=pd.Timestamp("1901-02-03").date())
    candidates = published["resolver"].resolve(record, "canonical")
    assert all(c.match_weight < thresholds("person").match for c in candidates)


def test_organizations_resolve_to_their_customer(published):
    record = stored(published, "organization", 2)
    own_customer = record.pop("customer_id")
    record["source_record_id"] = "web:org-lead"
    record["email"] = None
    (best,) = published["resolver"].resolve(record, "canonical", top_k=1)
    assert best.customer_id == own_customer and best.party_type == "organization"
    assert "registration_id" in best.evidence


def test_resolve_record_keeps_one_warm_resolver_per_warehouse_state(published, monkeypatch):
    import pipelines.identify.realtime as realtime

    built = []
    original = realtime.RealtimeResolver

    class Counting(original):
        def __init__(self, warehouse, models=None, max_candidates=500):
            built.append(warehouse)
            super().__init__(warehouse, models=published["models"], max_candidates=max_candidates)

    monkeypatch.setattr(realtime, "RealtimeResolver", Counting)
    monkeypatch.setattr(realtime, "_DEFAULT_RESOLVERS", {})
    record = stored(published, "person", 5)
    own = record.pop("customer_id")
    for _ in range(3):
        assert resolve_record(record, "canonical", warehouse=published["warehouse"])[0].customer_id == own
    assert len(built) == 1
    stat = published["warehouse"].stat()
    os.utime(published["warehouse"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a publish
    resolve_record(record, "canonical", warehouse=published["warehouse"])
    assert len(built) == 2


def test_bench_realtime_reports_latency_percentiles(published):
    figures = bench_realtime(published["warehouse"], n_queries=30, models=published["models"], warmup=3)
    assert figures["queries"] == 30 and figures["warehouse_records"] == len(published["records"])
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert figures["top1_is_own_customer"] >= 0.9


def test_a_record_in_a_source_shape_goes_through_its_mapping(published):
    """A sales lead as the CRM writes it is standardized by ingest's mapping, then resolved."""
    record = stored(published, "person", 20)
    lead = {
        "lead_id": "L09999999", "created_at": "2026-03-14 09:12:55", "channel": "web",
        "lead_type": "person", "first_name": record["given_name_norm"].title(),
        "last_name": record["family_name_norm"].title(), "email": record["email"],
        "mobile": record["phone_mobile"], "street_address": f"{record['street']} {record['house_number']}",
        "zip": record["postcode"], "city": record["city"], "country": record["country"],
        "birth_date": record["birth_date"].strftime("%d.%m.%Y"), "product_interest": "LIFE_TERM",
        "marketing_opt_in": "Y", "last_modified": "2026-03-15 10:00:00",
    }
    canonical = published["resolver"].standardize(lead, "sales")
    assert canonical["source_record_id"].iloc[0] == "query:sales:L09999999"
    assert canonical["party_type"].iloc[0] == "person"
    best = published["resolver"].resolve(lead, "sales")[0]
    assert best.customer_id == record["customer_id"]
    assert best.match_weight >= thresholds("person").match
    with pytest.raises(KeyError, match="unknown source"):
        published["resolver"].resolve(lead, "no_such_source")


def test_fast_input_path_is_used_only_when_it_matches_the_nightly_builder(published, monkeypatch):
    import pyarrow as pa

    from pipelines.identify.realtime import _PartyScorer

    assert published["resolver"]._parties["person"].fast_input
    records = published["records"]
    persons = pa.Table.from_pandas(records[records["party_type"] == "person"], preserve_index=False)
    monkeypatch.setattr(_PartyScorer, "_nickname_variants", lambda self, name: ["zzz"])
    drifted = _PartyScorer("person", persons, published["models"], max_candidates=200)
    assert not drifted.fast_input  # drift detected: falls back to the nightly builder
    record = stored(published, "person", 9)
    own = record.pop("customer_id")
    assert drifted.best_customers(pd.DataFrame([record]), top_k=1)[0].customer_id == own


def test_scoring_that_differs_from_splinks_falls_back_to_splinks_sql(published, monkeypatch):
    import pyarrow as pa

    from pipelines.identify.realtime import _PartyScorer
    from pipelines.resolve.realtime import CompiledScorer

    weigh = CompiledScorer.weigh

    def drifted(self, pair):
        pair = weigh(self, pair)
        pair["match_weight"] += 1e-6
        return pair

    monkeypatch.setattr(CompiledScorer, "weigh", drifted)
    records = published["records"]
    persons = pa.Table.from_pandas(records[records["party_type"] == "person"], preserve_index=False)
    scorer = _PartyScorer("person", persons, published["models"], max_candidates=200)
    assert scorer.fast_input and not scorer.fast_scoring
    record = stored(published, "person", 9)
    own = record.pop("customer_id")
    assert scorer.best_customers(record, top_k=1)[0].customer_id == own
    with pytest.raises(RuntimeError, match="fast path is off"):
        scorer.pairs(record)


def test_ucv_resolve_prints_the_best_customers(published, monkeypatch, tmp_path):
    import json

    from typer.testing import CliRunner

    import pipelines.identify.realtime as realtime
    from pipelines.identify.commands import app

    path = published["warehouse"].resolve()
    monkeypatch.setattr(realtime, "_DEFAULT_RESOLVERS",
                        {(str(path), path.stat().st_mtime_ns): published["resolver"]})
    record = stored(published, "person", 11)
    own = record.pop("customer_id")
    record = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()
              if not (isinstance(v, float) and math.isnan(v))}
    (tmp_path / "lead.json").write_text(json.dumps(record))
    runner = CliRunner()
    result = runner.invoke(app, ["resolve", "--source", "canonical", "--file", str(tmp_path / "lead.json"),
                                 "--warehouse", str(path), "--top-k", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert own in result.output and "national_id" in result.output
    both = runner.invoke(app, ["resolve", "--source", "canonical", "--record", "{}", "--file", "x.json"])
    assert both.exit_code != 0


@pytest.mark.parametrize("source", ["servicing", "sales"])
def test_bench_realtime_with_source_shaped_queries(published, source):
    """Queries written in a source's export shape go through its mapping and still find their customer."""
    figures = bench_realtime(published["warehouse"], n_queries=20, models=published["models"], warmup=2,
                             source=source)
    assert figures["queries"] == 20 and figures["query_shape"] == source
    assert 0 < figures["standardize_p50_ms"] <= figures["standardize_p95_ms"] <= figures["max_ms"]
    # Servicing keeps the national ID; a sales lead has none, so a blanked e-mail or phone costs more.
    assert figures["top1_is_own_customer"] >= (0.9 if source == "servicing" else 0.6)
    with pytest.raises(ValueError, match="source must be"):
        bench_realtime(published["warehouse"], n_queries=1, models=published["models"], source="nope")
