"""Incremental nights: reused staged rows and pairs give what a full night gives, erasure holds.

Night 1 of a small generated population runs full; one of its linked records is then erased;
night 2 (the same population a day later, new leads and new mobiles) runs once `--full` and once
`--incremental` from copies of the same data root.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from orchestration_support import EXPORT_DATE, end_to_end_skip_reason, land

from pipelines.bench.agreement import cluster_agreement
from pipelines.bench.incremental import compare_runs
from pipelines.orchestration.incremental import base_night
from pipelines.orchestration.run import run_pipeline
from pipelines.standardize.reuse import fingerprint_sql

NIGHT_2 = EXPORT_DATE + timedelta(days=1)


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_cluster_agreement_counts_pairs_per_cluster(tmp_path):
    a = _parquet(tmp_path / "a.parquet", source_record_id=["1", "2", "3", "4", "5"],
                 cluster_id=["1", "1", "1", "4", "5"])
    b = _parquet(tmp_path / "b.parquet", source_record_id=["1", "2", "3", "4", "5"],
                 cluster_id=["1", "1", "3", "3", "5"])
    with duckdb.connect() as con:
        same = cluster_agreement(con, a, a)
        moved = cluster_agreement(con, a, b)
    assert same == {"clustered_pairs_a": 3, "clustered_pairs_b": 3, "clustered_pairs_both": 3,
                    "pairwise_agreement": 1.0}
    # a: 1-2, 1-3, 2-3; b: 1-2, 3-4; both: 1-2 -> 1 of 4
    assert moved == {"clustered_pairs_a": 3, "clustered_pairs_b": 2, "clustered_pairs_both": 1,
                     "pairwise_agreement": 0.25}


def test_row_fingerprint_sees_values_not_lineage_or_column_order():
    with duckdb.connect() as con:
        def fp(sql: str, source: str = "sales") -> str:
            cols = [r[0] for r in con.execute(f"DESCRIBE {sql}").fetchall()]
            return con.execute(f"SELECT {fingerprint_sql(source, cols)} FROM ({sql})").fetchall()[0][0]

        row = "SELECT 'Anna' AS name, NULL::VARCHAR AS phone, 'f1' AS _source_file, 1 AS _row_number"
        assert fp(row) == fp("SELECT 'f2' AS _source_file, 9 AS _row_number, NULL::VARCHAR AS phone, "
                             "'Anna' AS name")
        assert fp(row) != fp("SELECT 'Anna' AS name, 'NULL' AS phone, 'f1' AS _source_file, "
                             "1 AS _row_number")
        assert fp(row) != fp(row, source="claims")


def test_base_night_is_the_latest_earlier_successful_run(tmp_path):
    for run_id, status in [("2026-11-20", "success"), ("2026-11-21", "success"),
                           ("2026-11-22", "failed"), ("2026-11-24", "success")]:
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "run_state.json").write_text(json.dumps({"status": status}))
    (tmp_path / "not-a-date").mkdir()
    assert base_night("2026-11-23", tmp_path).run_id == "2026-11-21"
    assert base_night("2026-11-20", tmp_path) is None
    assert base_night("2026-11-23", tmp_path / "missing") is None


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """(full night 2 run folder, incremental night 2 run folder, the erased record)."""
    if reason := end_to_end_skip_reason():
        pytest.skip(reason)
    from pipelines.generate import generate_exports
    from pipelines.identify.erase import ErasureRequest, erase

    gen = tmp_path_factory.mktemp("gen")
    for night in (1, 2):
        generate_exports(gen / f"n{night}", customers=400, seed=7, export_date=EXPORT_DATE,
                         night=night)
    full_home, incr_home = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("incr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UCV_HOME", str(full_home))
        land(full_home, gen / "n1" / "landing")
        night_1 = run_pipeline(EXPORT_DATE, incremental=False)
        # a record with a link: a reused pair would bring it back if erasure did not hold
        erased = duckdb.sql(f"""SELECT min(source_record_id_l) FROM read_parquet(
            '{night_1.resolved_dir / "match_pairs.parquet"}') WHERE is_link""").fetchall()[0][0]
        erase(ErasureRequest(source_records=[erased]))
        land(full_home, gen / "n2" / "landing", NIGHT_2)
        shutil.rmtree(incr_home)
        shutil.copytree(full_home, incr_home, symlinks=True)
        full = run_pipeline(NIGHT_2, incremental=False)
        mp.setenv("UCV_HOME", str(incr_home))
        incr = run_pipeline(NIGHT_2, incremental=True)
    return full.root, incr.root, erased


def test_incremental_night_reuses_most_rows_and_pairs(nights):
    _, incr, _ = nights
    summary = json.loads((incr / "report" / "incremental.json").read_text())
    sources = summary["standardize"]["sources"].values()
    assert summary["standardize"]["base_run"] == EXPORT_DATE.isoformat()
    reused = sum(s["rows_reused"] for s in sources)
    fresh = sum(s["rows_standardized"] for s in sources)
    assert reused > 10 * fresh > 0
    person = summary["resolve"]["person"]
    assert person["mode"] == "incremental"
    assert person["pairs_reused"] > 10 * person["comparisons_scored"] > 0


def test_incremental_night_stages_exactly_what_a_full_night_stages(nights):
    full, incr, _ = nights
    comparison = compare_runs(full, incr)
    assert comparison["staged_records"]["only_full"] == 0
    assert comparison["staged_records"]["only_incremental"] == 0
    assert comparison["clusters"]["pairwise_agreement"] >= 0.999
    assert comparison["match_pairs"]["only_full"] == comparison["match_pairs"]["only_incremental"] == 0
    # golden records reused for untouched customers are exactly what computing them gives;
    # confidence follows the kept pairs' weights (base night's), so it moves a little
    assert comparison["customer_map"]["only_full"] == comparison["customer_map"]["only_incremental"] == 0
    assert comparison["golden_customers"]["only_full"] == 0
    assert comparison["golden_customers"]["only_incremental"] == 0
    assert comparison["golden_policy_links"]["only_full"] == 0
    assert comparison["golden_policy_links"]["only_incremental"] == 0
    assert comparison["golden_confidence_max_difference"] < 0.01


def test_incremental_night_reuses_golden_records_of_untouched_customers(nights):
    _, incr, _ = nights
    golden = json.loads((incr / "report" / "incremental.json").read_text())["golden"]
    assert golden["reason"] is None
    assert golden["customers_reused"] > 2 * golden["customers_recomputed"] > 0


def test_an_erased_record_never_comes_back_from_a_reused_row_or_pair(nights):
    _, incr, erased = nights
    for relative, columns in [("staged/source_records.parquet", ["source_record_id"]),
                              ("staged/fingerprints/" + erased.split(":")[0] + ".parquet",
                               ["source_record_id"]),
                              ("resolved/match_pairs.parquet",
                               ["source_record_id_l", "source_record_id_r"]),
                              ("resolved/clusters.parquet", ["source_record_id"]),
                              ("identified/customer_map.parquet", ["source_record_id"]),
                              ("golden/source_records.parquet", ["source_record_id"])]:
        where = " OR ".join(f"{c} = ?" for c in columns)
        hits = duckdb.execute(f"SELECT count(*) FROM read_parquet('{incr / relative}') "
                              f"WHERE {where}", [erased] * len(columns)).fetchall()[0][0]
        assert hits == 0, relative
    # nor from a reused golden record: no surviving value names it as its source
    customers = incr / "golden" / "customers.parquet"
    names = [c for (c, *_) in duckdb.execute(f"DESCRIBE SELECT * FROM '{customers}'").fetchall()
             if c.endswith("_source_record_id")]
    assert names
    where = " OR ".join(f"{c} = ?" for c in names)
    assert duckdb.execute(f"SELECT count(*) FROM '{customers}' WHERE {where}",
                          [erased] * len(names)).fetchall()[0][0] == 0
    # the base night's fingerprints were cleaned by `ucv erase` like every other run file
    night_1 = incr.parent / EXPORT_DATE.isoformat()
    for relative in ("staged/fingerprints/" + erased.split(":")[0] + ".parquet",
                     "resolved/record_fingerprints.parquet"):
        assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{night_1 / relative}') "
                              "WHERE source_record_id = ?", [erased]).fetchall()[0][0] == 0


def test_full_flag_forces_a_full_night_with_incremental_configured(monkeypatch):
    from pipelines.orchestration.incremental import incremental_setting
    from pipelines.orchestration.operations import Operations, load_operations

    configured = load_operations()
    assert configured.incremental is False  # opt-in: the shipped default stays full
    on = Operations(**{**configured.__dict__, "incremental": True})
    monkeypatch.setattr("pipelines.orchestration.operations.load_operations", lambda: on)
    assert incremental_setting(None) is True
    assert incremental_setting(False) is False


def test_operations_incremental_must_be_a_boolean(tmp_path):
    from pipelines.orchestration.operations import OperationsConfigError, load_operations

    bad = tmp_path / "operations.yaml"
    bad.write_text("incremental: 'yes'\n")
    with pytest.raises(OperationsConfigError, match="incremental"):
        load_operations(bad)


def test_dag_mode_param_maps_to_the_switch():
    from pipelines.orchestration.incremental import mode_flag

    assert [mode_flag(m) for m in ("incremental", "full", "config", None)] == [True, False, None, None]


@pytest.mark.parametrize("switch", [True, False])
def test_run_pipeline_hands_the_switch_to_standardize_and_resolve(switch, tmp_path, monkeypatch):
    from pipelines.orchestration import stages

    monkeypatch.setenv("UCV_HOME", str(tmp_path))
    monkeypatch.setenv("UCV_STAGE_PROCESSES", "0")  # the fakes record their calls in this process
    landing = tmp_path / "landing" / EXPORT_DATE.isoformat()
    landing.mkdir(parents=True)
    (landing / "sales_leads.csv").write_text("id\n1\n")
    monkeypatch.setattr(stages, "configured_sources", lambda: ["sales"])
    calls = {}
    for name in ("extract", "validate", "standardize", "resolve", "identify", "golden",
                 "publish", "export", "report"):
        monkeypatch.setattr(stages, name, lambda *args, _n=name: calls.setdefault(_n, args))
    run_pipeline(EXPORT_DATE, incremental=switch)
    assert calls["standardize"][-1] is switch and calls["resolve"][-1] is switch
    assert calls["identify"] == (EXPORT_DATE.isoformat(),)


def test_a_base_night_without_fingerprints_or_with_other_rules_is_not_reused(tmp_path):
    from pipelines.ingest import load_mappings
    from pipelines.settings import RunPaths
    from pipelines.standardize.reuse import base_usable, fingerprints_path, standardizer_version

    mapping = load_mappings()["sales"]
    base = RunPaths(run_id="2026-11-21", root=tmp_path / "2026-11-21")
    version = standardizer_version(mapping)
    assert base_usable(None, mapping, version) == "no earlier successful night"
    assert "no fingerprints" in base_usable(base, mapping, version)
    fp = fingerprints_path(base, "sales")
    fp.parent.mkdir(parents=True)
    fp.write_bytes(b"")
    (base.staged_dir / "sales.parquet").write_bytes(b"")
    fp.with_suffix(".json").write_text(json.dumps({"standardizer": "older rules"}))
    assert "other rules" in base_usable(base, mapping, version)
    fp.with_suffix(".json").write_text(json.dumps({"standardizer": version}))
    assert base_usable(base, mapping, version) is None


@pytest.fixture(scope="module")
def comparison_inputs(tmp_path_factory):
    """Splink input tables of a generated sample (2,000 customers), both party types."""
    from pipelines.generate import generate_exports
    from pipelines.ingest import ingest
    from pipelines.settings import RunPaths

    root = tmp_path_factory.mktemp("block_changed")
    generate_exports(root / "gen", customers=2000, seed=11)
    run = RunPaths.for_run("staged", base=root / "runs")
    ingest(root / "gen" / "landing", run)
    return run.staged_dir / "source_records.parquet"


@pytest.mark.parametrize("party_type", ["person", "organization"])
@pytest.mark.parametrize("share", [0.01, 0.2, 1.0])
def test_blocking_only_the_changed_records_gives_the_full_blocking_touching_them(
        comparison_inputs, party_type, share):
    """block_changed against Splink's blocking of every record, filtered to the pairs with a
    changed record: the same pairs under the same rule (the person model has a rule that is not
    symmetric in l and r, name_city_key_gf = name_city_key_fg)."""
    from pipelines.resolve.backend import database_api, duckdb_connection
    from pipelines.resolve.features import create_comparison_table
    from pipelines.resolve.incremental import block_changed
    from pipelines.resolve.predict import _linker, load_model

    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    n = create_comparison_table(con, str(comparison_inputs), party_type, "input_t", ordered=False)
    assert n > 200
    model = load_model(party_type)
    linker = _linker(db_api, "input_t", model)
    full = linker.inference.compute_blocked_pairs_for_predict().physical_name
    con.execute(f"""CREATE TEMP TABLE delta_{party_type} AS SELECT unique_id FROM input_t
                    WHERE hash(unique_id, 'delta') % 1000 < {int(share * 1000)}""")
    mine = block_changed(con, linker, "input_t", party_type)
    expected = f"""SELECT match_key, join_key_l, join_key_r FROM {full}
                   WHERE join_key_l IN (SELECT unique_id FROM delta_{party_type})
                      OR join_key_r IN (SELECT unique_id FROM delta_{party_type})"""
    got = f"SELECT match_key, join_key_l, join_key_r FROM {mine}"
    counts = con.execute(f"""SELECT (SELECT count(*) FROM ({expected})), (SELECT count(*) FROM ({got})),
        (SELECT count(*) FROM ({expected} EXCEPT ALL {got})),
        (SELECT count(*) FROM ({got} EXCEPT ALL {expected}))""").fetchall()[0]
    assert counts[0] > 0 and counts[0] == counts[1] and counts[2:] == (0, 0), counts
    if party_type == "person":
        rules = [r.blocking_rule_sql for r in linker._settings_obj._blocking_rules_to_generate_predictions]
        assert any("name_city_key_gf" in r for r in rules)  # the asymmetric rule is in play


def test_a_model_with_an_exploding_rule_keeps_the_full_blocking_filtered(comparison_inputs):
    """A user-trained model may block on list elements (arrays_to_explode): Splink expands those
    itself, so block_changed takes the full blocking and keeps the pairs touching a change."""
    from pipelines.resolve.backend import database_api, duckdb_connection
    from pipelines.resolve.features import create_comparison_table
    from pipelines.resolve.incremental import block_changed
    from pipelines.resolve.predict import _linker, load_model

    db_api = database_api("duckdb")
    con = duckdb_connection(db_api)
    create_comparison_table(con, str(comparison_inputs), "person", "input_t", ordered=False)
    model = load_model("person")
    model["blocking_rules_to_generate_predictions"].append({
        "blocking_rule": "l.given_name_variants = r.given_name_variants AND l.birth_date = r.birth_date",
        "arrays_to_explode": ["given_name_variants"], "sql_dialect": "duckdb"})
    linker = _linker(db_api, "input_t", model)
    con.execute("""CREATE TEMP TABLE delta_person AS SELECT unique_id FROM input_t
                   WHERE hash(unique_id, 'delta') % 10 = 0""")
    mine = block_changed(con, linker, "input_t", "person")
    full = linker.inference.compute_blocked_pairs_for_predict().physical_name
    expected = f"""SELECT match_key, join_key_l, join_key_r FROM {full}
                   WHERE join_key_l IN (SELECT unique_id FROM delta_person)
                      OR join_key_r IN (SELECT unique_id FROM delta_person)"""
    got = f"SELECT match_key, join_key_l, join_key_r FROM {mine}"
    counts = con.execute(f"""SELECT (SELECT count(*) FROM ({expected})),
        (SELECT count(*) FROM ({expected} EXCEPT ALL {got})),
        (SELECT count(*) FROM ({got} EXCEPT ALL {expected}))""").fetchall()[0]
    assert counts[0] > 0 and counts[1:] == (0, 0), counts
