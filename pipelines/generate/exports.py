"""`generate_exports`: the four landing exports plus the ground truth, from a seed.

Layout: `<out>/landing/` holds only the exports (what the source systems deliver);
`<out>/truth/` holds what only the evaluator may read. Same seed and export date, same bytes.
"""

from __future__ import annotations

import io
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.generate.broker import BROKER_FILE, gb_entity_truth, render_broker
from pipelines.generate.config import GeneratorConfig, load_config
from pipelines.generate.entities import Entities, arrow_column, build_entities, e164_column
from pipelines.generate.kinds import entity_kinds, related_companies
from pipelines.generate.nights import later_keys, later_nights
from pipelines.generate.noise import (
    ENTITY_KINDS,
    ENTITY_NOISE,
    NOISE_KINDS,
    RECORD_KINDS,
    RECORD_NOISE,
    NoiseBook,
)
from pipelines.generate.pools import build_pools
from pipelines.generate.portfolio import (
    Policies,
    before_event,
    build_appearances,
    multi_record_entities,
)
from pipelines.generate.render import (
    Rendered,
    life_events,
    render_claims,
    render_sales,
    render_servicing,
    render_underwriting,
)

DEFAULT_EXPORT_DATE = date(2026, 11, 22)
EXPORT_FILES = {
    "sales": "sales_leads.csv",
    "underwriting": "underwriting_applications.parquet",
    "servicing": "policy_servicing.jsonl",
    "claims": "claims.csv",
}
SOURCES = list(EXPORT_FILES)
ENTITY_TRUTH_COLUMNS = [
    "entity_id", "party_type", "locale", "given_name", "family_name", "given_name_latin",
    "family_name_latin", "name_native", "name_suffix", "sex", "birth_date", "national_id",
    "national_id_type", "phone_mobile", "phone_landline", "email", "street", "house_number",
    "postcode", "city", "street_native", "city_native", "district", "district_native", "country",
    "org_name", "org_name_native", "org_legal_form", "registration_id", "registration_type",
    "marketing_consent", "hard_case", "hard_case_group",
]


@dataclass
class GenerationSummary:
    """What one generation produced, the rates asked and realised, and how long it took."""

    seed: int
    customers: int
    export_date: str
    records_per_source: dict[str, int]
    total_records: int
    files: dict[str, int]
    noise: dict[str, dict]
    hard_negatives: dict[str, dict]
    policies: dict[str, int]
    config: dict
    kinds: dict = field(default_factory=dict)
    night: int = 1
    elapsed_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """An independent generator per stage, so changing one stage does not reshuffle the others."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def generate_exports(out_dir: Path, customers: int, seed: int,
                     export_date: date = DEFAULT_EXPORT_DATE,
                     config: GeneratorConfig | None = None, night: int = 1) -> GenerationSummary:
    """Write the four source exports to `<out>/landing/` and the truth to `<out>/truth/`.

    `night` > 1: the same population `night - 1` days after `export_date`, with those days'
    changes (pipelines/generate/nights.py); the exports are dated that later day."""
    if night < 1:
        raise ValueError(f"night must be 1 or more, got {night}")
    started = time.perf_counter()
    stages: dict[str, float] = {}
    clock = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        stages[name] = round(now - clock[0], 3)
        clock[0] = now

    config = config or load_config()
    out_dir = Path(out_dir)
    pools = build_pools(seed)
    entities = build_entities(customers, stage_rng(seed, "entities"), pools, config, export_date)
    life_events(entities, pools, stage_rng(seed, "life_events"))
    entity_kinds(entities.columns, pools, config, stage_rng(seed, "entity_kinds"))
    related_companies(entities.columns, config, stage_rng(seed, "related_companies"))
    lap("entities")

    policies, appearances = build_appearances(entities, stage_rng(seed, "portfolio"), config, export_date)
    shuffle = stage_rng(seed, "row_order")
    sources = {}
    for name, rows in appearances.items():
        order = shuffle.permutation(len(rows["entity"]))
        sources[name] = {k: v[order] for k, v in rows.items()}
    old_address, maiden, event_eligible = _life_event_records(entities, sources, config, seed)
    later = later_nights(entities, sources, config, seed, export_date, night) if night > 1 else None
    lap("portfolio")

    rng = {name: stage_rng(seed, f"render_{name}") for name in SOURCES}
    rendered = {
        "sales": render_sales(sources["sales"], entities, pools, config, rng["sales"],
                              old_address["sales"], maiden["sales"], export_date),
        "underwriting": render_underwriting(sources["underwriting"], entities, policies, pools, config,
                                            rng["underwriting"], old_address["underwriting"],
                                            maiden["underwriting"]),
        "servicing": render_servicing(sources["servicing"], entities, policies, pools, config,
                                      rng["servicing"], old_address["servicing"], maiden["servicing"]),
        "claims": render_claims(sources["claims"], entities, policies, pools, config, rng["claims"],
                                old_address["claims"], maiden["claims"]),
    }
    if later is not None:
        rendered["sales"] = _with_later_leads(rendered["sales"], later, entities, pools, config, seed,
                                              export_date + timedelta(days=night - 1))
    lap("render")

    landing = out_dir / "landing"
    truth_dir = out_dir / "truth"
    landing.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    write_sales_csv(rendered["sales"].table, landing / EXPORT_FILES["sales"])
    write_parquet(rendered["underwriting"].table, landing / EXPORT_FILES["underwriting"])
    write_jsonl(rendered["servicing"].table, landing / EXPORT_FILES["servicing"])
    write_claims_csv(rendered["claims"].table, landing / EXPORT_FILES["claims"],
                     us=config.population.western_country == "US")
    broker = None
    if config.exports.broker:
        broker = render_broker(entities, policies, sources["servicing"], pools, config,
                               stage_rng(seed, "render_broker"), export_date)
        write_jsonl(broker[0], landing / BROKER_FILE)
    lap("write_exports")

    truth = ground_truth(entities, rendered)
    entity_table = entity_truth(entities, old_address, maiden, sources)
    if broker is not None:
        truth = pa.concat_tables([truth, broker[1]])
        entity_table = pa.concat_tables([entity_table, gb_entity_truth(broker[2])], promote_options="default")
    write_parquet(truth, truth_dir / "ground_truth.parquet")
    write_parquet(entity_table, truth_dir / "entities.parquet")
    lap("write_truth")

    files = {str(p.relative_to(out_dir)): p.stat().st_size
             for p in sorted([*landing.iterdir(), *truth_dir.glob("*.parquet")])}
    summary = GenerationSummary(
        seed=seed, customers=customers, export_date=(export_date + timedelta(days=night - 1)).isoformat(),
        records_per_source={**{name: r.table.num_rows for name, r in rendered.items()},
                            **({"broker": broker[1].num_rows} if broker is not None else {})},
        total_records=sum(r.table.num_rows for r in rendered.values()) + (broker[1].num_rows if broker else 0),
        files=files,
        noise=realised_noise(config, rendered, event_eligible),
        hard_negatives=realised_hard_negatives(config, entities),
        kinds=realised_kinds(config, rendered, entities),
        night=night,
        policies=policy_figures(policies, export_date, config.portfolio.renewal_window_days),
        config=config.to_dict(),
    )
    summary.elapsed_seconds = round(time.perf_counter() - started, 3)
    summary.stage_seconds = stages
    (truth_dir / "generation_summary.json").write_text(
        json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _with_later_leads(first: Rendered, later: dict[str, np.ndarray], entities: Entities, pools, config,
                      seed: int, night_date: date) -> Rendered:
    """The first night's sales rows, then the leads entered on later nights (keys of their own)."""
    none = np.zeros(len(later["entity"]), dtype=bool)
    extra = render_sales(later, entities, pools, config, stage_rng(seed, "render_sales_later"), none, none,
                         night_date)
    keys = later_keys("L", later["night"], 8)
    table = extra.table.set_column(extra.table.schema.get_field_index("lead_id"), "lead_id", keys)
    return Rendered(pa.concat_tables([first.table, table]),
                    np.r_[first.keys, np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object)],
                    np.r_[first.entity, extra.entity], NoiseBook.concat(first.noise, extra.noise))


def _life_event_records(entities: Entities, sources: dict, config: GeneratorConfig, seed: int):
    """Which records predate a move or a marriage (they show the old address / maiden name)."""
    rng = stage_rng(seed, "life_event_records")
    n = len(entities)
    entity = np.concatenate([sources[s]["entity"] for s in SOURCES])
    times = np.concatenate([sources[s]["time"].astype("datetime64[s]").astype(np.int64) for s in SOURCES])
    ordinary_person = (entities["party_type"] == "person") & (entities["hard_case"] == None)  # noqa: E711
    multi = multi_record_entities(entity, n)
    can_move = ordinary_person & multi
    can_marry = can_move & (entities["sex"] == "F") & (entities["locale"] != "cn")
    moved = can_move & (rng.random(n) < config.noise.moved)
    married = can_marry & (rng.random(n) < config.noise.surname_change)
    old_all = before_event(entity, times, moved, rng)
    maiden_all = before_event(entity, times, married, rng)
    entities.columns["_moved"] = moved
    entities.columns["_married"] = married
    bounds = np.cumsum([0] + [len(sources[s]["entity"]) for s in SOURCES])
    old = {s: old_all[bounds[i]:bounds[i + 1]] for i, s in enumerate(SOURCES)}
    maiden = {s: maiden_all[bounds[i]:bounds[i + 1]] for i, s in enumerate(SOURCES)}
    eligible = {"moved": int(can_move.sum()), "surname_change": int(can_marry.sum()),
                "moved_entities": int(moved.sum()), "surname_change_entities": int(married.sum())}
    return old, maiden, eligible


# --- writers: each in the format docs/source_exports.md declares --------------------------------

def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet without wall-clock metadata: same table, same bytes."""
    pq.write_table(table, path, compression="zstd", row_group_size=256_000)


def _csv_bytes(table: pa.Table, delimiter: str) -> bytes:
    sink = io.BytesIO()
    options = pacsv.WriteOptions(include_header=True, delimiter=delimiter, quoting_style="needed")
    pacsv.write_csv(table, sink, write_options=options)
    return sink.getvalue()


def write_sales_csv(table: pa.Table, path: Path) -> None:
    """UTF-8, comma, double-quote quoting where needed (notes hold commas and newlines)."""
    path.write_bytes(_csv_bytes(table, ","))


def write_claims_csv(table: pa.Table, path: Path, us: bool = False) -> None:
    """GB18030, semicolon; the claims system predates UTF-8 in the insurer's Chinese branch.

    A US insurer's claims system writes Windows-1252 with commas instead."""
    if us:
        path.write_bytes(_csv_bytes(table, ",").decode("utf-8").encode("cp1252"))
    else:
        path.write_bytes(_csv_bytes(table, ";").decode("utf-8").encode("gb18030"))


def write_jsonl(table: pa.Table, path: Path) -> None:
    """One JSON object per line, keys in column order, UTF-8 without escaping non-ASCII."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.register("servicing", table)
        con.execute(f"COPY (SELECT * FROM servicing) TO '{path.as_posix()}' (FORMAT json)")
    finally:
        con.close()


# --- ground truth --------------------------------------------------------------------------------

def ground_truth(entities: Entities, rendered: dict[str, Rendered]) -> pa.Table:
    """One row per exported record: its true entity, hard-negative group and noise kinds."""
    parts = []
    for name in SOURCES:
        r = rendered[name]
        n = len(r.keys)
        masks = np.column_stack([r.noise.applied[k] for k in NOISE_KINDS]) if n else np.zeros((0, len(NOISE_KINDS)), bool)
        rows, kinds = np.nonzero(masks)
        offsets = np.r_[0, np.cumsum(np.bincount(rows, minlength=n))].astype(np.int32)
        noise = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.array(NOISE_KINDS, dtype=object)[kinds],
                                                                     pa.string()))
        party, hard = entities["party_type"][r.entity], entities["hard_case"][r.entity]
        entity_level = {"organization": party == "organization", "company_owner": hard == "company_owner",
                        "related_company": hard == "related_company"}
        every = NOISE_KINDS + RECORD_KINDS + ENTITY_KINDS
        all_masks = np.column_stack([r.noise.applied[k] for k in NOISE_KINDS + RECORD_KINDS]
                                    + [entity_level[k] for k in ENTITY_KINDS]) if n else np.zeros((0, len(every)), bool)
        rows, kind_index = np.nonzero(all_masks)
        offsets = np.r_[0, np.cumsum(np.bincount(rows, minlength=n))].astype(np.int32)
        kinds_list = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.array(every, dtype=object)[kind_index],
                                                                          pa.string()))
        keys = pa.array(r.keys, pa.string())
        parts.append(pa.table({
            "source_system": pa.array([name] * n, pa.string()),
            "source_key": keys,
            "source_record_id": pa.compute.binary_join_element_wise(f"{name}:", keys, ""),
            "entity_id": pa.array(entities["entity_id"][r.entity], pa.string()),
            "party_type": pa.array(entities["party_type"][r.entity], pa.string()),
            "hard_case": pa.array(entities["hard_case"][r.entity], pa.string(), from_pandas=True),
            "hard_case_group": pa.array(entities["hard_case_group"][r.entity], pa.string(), from_pandas=True),
            "noise": noise,
            "kinds": kinds_list,
        }))
    return pa.concat_tables(parts)


def entity_truth(entities: Entities, old_address, maiden, sources) -> pa.Table:
    """One row per true entity with its current, correct attributes."""
    cols = dict(entities.columns)
    cols["phone_mobile"] = cols["e164_mobile"]
    changed = cols.get("_mobile_changed")
    previous_mobile = np.full(len(entities), None, dtype=object)
    if changed is not None and changed.any():  # a later night: the current number is the new one
        new = e164_column({**cols, "mobile_ndc": cols["_new_mobile_ndc"], "mobile_sub": cols["_new_mobile_sub"]},
                          "mobile")
        previous_mobile = np.where(changed, cols["e164_mobile"], None)  # type: ignore[call-overload]
        cols["phone_mobile"] = np.where(changed, new, cols["e164_mobile"])
    cols["phone_landline"] = cols["e164_landline"]
    table = pa.table({c: arrow_column(cols[c]) for c in ENTITY_TRUTH_COLUMNS})
    previous = np.where(cols["_married"], cols["_maiden"], None)  # type: ignore[call-overload]
    counts = np.zeros(len(entities), dtype=np.int64)
    for rows in sources.values():
        counts += np.bincount(rows["entity"], minlength=len(entities))
    return (table.append_column("moved", pa.array(cols["_moved"]))
            .append_column("previous_phone_mobile", pa.array(previous_mobile, pa.string(), from_pandas=True))
            .append_column("english_given_name", arrow_column(cols["_english_given"]))
            .append_column("cantonese_name", arrow_column(_joined(cols["_cantonese_family"], cols["_cantonese_given"])))
            .append_column("previous_family_name", pa.array(previous, pa.string(), from_pandas=True))
            .append_column("n_source_records", pa.array(counts)))


def _joined(family: np.ndarray, given: np.ndarray) -> np.ndarray:
    return np.array([f"{f} {g}" if f is not None else None for f, g in zip(family, given, strict=True)], dtype=object)


def policy_figures(policies: Policies, export_date: date, window_days: int) -> dict[str, int]:
    """Policy counts, including active policies up for renewal soon after the export date."""
    today = np.datetime64(export_date, "D")
    active = policies.status == "active"
    soon = active & (policies.end > today) & (policies.end <= today + np.timedelta64(window_days, "D"))
    return {"policies": len(policies.holder), "active": int(active.sum()),
            "renewals_in_window": int(soon.sum()), "renewal_window_days": window_days}


def realised_noise(config: GeneratorConfig, rendered: dict[str, Rendered], event_eligible: dict) -> dict:
    """Per noise kind: rate asked, eligible count, records changed and realised rate."""
    out = {}
    for kind in RECORD_NOISE:
        eligible = sum(r.noise.eligible[kind] for r in rendered.values())
        applied = sum(int(r.noise.applied[kind].sum()) for r in rendered.values())
        out[kind] = {"asked": getattr(config.noise, kind), "unit": "records", "eligible": eligible,
                     "applied": applied, "realised": round(applied / eligible, 4) if eligible else None}
    for kind in ENTITY_NOISE:
        eligible = event_eligible[kind]
        applied = event_eligible[f"{kind}_entities"]
        records = sum(int(r.noise.applied[kind].sum()) for r in rendered.values())
        out[kind] = {"asked": getattr(config.noise, kind), "unit": "entities", "eligible": eligible,
                     "applied": applied, "records_affected": records,
                     "realised": round(applied / eligible, 4) if eligible else None}
    return out


KIND_RATE = {"english_given_name": "english_given_name_use", "cantonese_romanisation": "cantonese_use"}


def realised_kinds(config: GeneratorConfig, rendered: dict[str, Rendered], entities: Entities) -> dict:
    """Per record-level kind: records eligible, changed, realised rate; entities that have it."""
    out = {}
    for kind in RECORD_KINDS:
        eligible = sum(r.noise.eligible[kind] for r in rendered.values())
        applied = sum(int(r.noise.applied[kind].sum()) for r in rendered.values())
        if not eligible:
            continue  # mobile_changed exists only on a second night
        holders = set()
        for r in rendered.values():
            holders.update(r.entity[r.noise.applied[kind]].tolist())
        out[kind] = {"asked": getattr(config.kinds, KIND_RATE.get(kind, kind)), "unit": "records",
                     "eligible": eligible, "applied": applied, "entities": len(holders),
                     "realised": round(applied / eligible, 4)}
    return out


def realised_hard_negatives(config: GeneratorConfig, entities: Entities) -> dict:
    """Per hard-negative kind: share asked, entities involved, groups and realised share."""
    party, locale, hard = entities["party_type"], entities["locale"], entities["hard_case"]
    persons = party == "person"
    denominators = {"household": persons, "twin": persons, "father_son": persons & (locale != "cn"),
                    "common_name": persons, "company_owner": party == "organization",
                    "related_company": party == "organization"}
    out = {}
    for kind, base in denominators.items():
        involved = base & (hard == kind)
        groups = len(set(entities["hard_case_group"][hard == kind]))
        out[kind] = {"asked": getattr(config.hard_negatives, kind), "eligible": int(base.sum()),
                     "entities": int(involved.sum()), "groups": groups,
                     "realised": round(involved.sum() / base.sum(), 4) if base.sum() else None}
    return out
