"""What happened to each customer: leads, policies, applications, policy parties and claims.

Produces, per source system, the rows it will export as arrays of entity index, policy index and
event times; `render` then writes them in each system's own shape. All times are derived from the
export date, never from the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.entities import Entities

PERSON_PRODUCTS = ["LIFE_TERM", "HEALTH", "MOTOR", "HOME", "PENSION"]
PERSON_PRODUCT_P = [0.25, 0.2, 0.3, 0.15, 0.1]
ORG_PRODUCTS = ["GROUP_HEALTH", "GROUP_LIFE", "COMMERCIAL_PROPERTY", "LIABILITY"]
LONG_TERM = {"LIFE_TERM", "PENSION"}
BASE_PREMIUM_EUR = {"LIFE_TERM": 400, "HEALTH": 2400, "MOTOR": 600, "HOME": 300, "PENSION": 1800,
                    "GROUP_HEALTH": 25000, "GROUP_LIFE": 15000, "COMMERCIAL_PROPERTY": 8000,
                    "LIABILITY": 5000}
CNY_PER_EUR = 7.8
CHANNELS = np.array(["web", "phone", "agent", "partner", "branch"], dtype=object)
DAY = np.timedelta64(86400, "s")


@dataclass
class Policies:
    holder: np.ndarray          # entity index of the policyholder
    number: np.ndarray          # 'P-DE-0001234'
    product: np.ndarray
    premium: np.ndarray         # annual, in `currency`
    sum_insured: np.ndarray
    currency: np.ndarray
    status: np.ndarray
    start: np.ndarray           # datetime64[D]
    end: np.ndarray
    has_application: np.ndarray


@dataclass
class Appearances:
    """Rows per source: entity index, policy index (-1 none), event time and source extras."""

    sales: dict[str, np.ndarray]
    underwriting: dict[str, np.ndarray]
    servicing: dict[str, np.ndarray]
    claims: dict[str, np.ndarray]

    def items(self):
        return [("sales", self.sales), ("underwriting", self.underwriting),
                ("servicing", self.servicing), ("claims", self.claims)]


def _times(rng, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Uniform random second-resolution times in [start, end) (datetime64[s] arrays)."""
    span = np.maximum((end - start).astype(np.int64), 1)
    return start + (rng.random(len(start)) * span).astype(np.int64).astype("timedelta64[s]")


def _add_years(days: np.ndarray, years: np.ndarray) -> np.ndarray:
    months = days.astype("datetime64[M]")
    offset = days - months.astype("datetime64[D]")
    return (months + (12 * years).astype("timedelta64[M]")).astype("datetime64[D]") + offset


def build_policies(entities: Entities, buyers: np.ndarray, rng: np.random.Generator,
                   config: GeneratorConfig, export_date: date) -> Policies:
    """Policies of the customers who bought, with products, premiums and renewal dates."""
    p = config.portfolio
    weights = np.array(p.policies_per_buyer) / sum(p.policies_per_buyer)
    count = rng.choice(len(weights), len(buyers), p=weights) + 1
    holder = np.repeat(buyers, count)
    n = len(holder)
    is_org = entities["party_type"][holder] == "organization"
    product = np.where(is_org, np.array(ORG_PRODUCTS, dtype=object)[rng.integers(0, 4, n)],
                       np.array(PERSON_PRODUCTS, dtype=object)[rng.choice(5, n, p=PERSON_PRODUCT_P)])
    country = entities["country"][holder]
    cny = country == "CN"
    base = np.array([BASE_PREMIUM_EUR[x] for x in product])
    premium = np.round(base * rng.lognormal(0, 0.5, n) * np.where(cny, CNY_PER_EUR, 1.0), 2)
    long_term = np.isin(product, list(LONG_TERM))
    sum_insured = np.round(premium * np.where(long_term, rng.uniform(150, 400, n), rng.uniform(20, 60, n)), -2)

    today = np.datetime64(export_date, "D")
    start = today - rng.integers(30, 12 * 365, n).astype("timedelta64[D]")
    status = np.array(["active", "lapsed", "cancelled"], dtype=object)[rng.choice(3, n, p=[0.85, 0.1, 0.05])]
    years_run = ((today - start).astype(int) // 365) + 1
    annual_end = _add_years(start, years_run)
    annual_end = np.where(annual_end <= today, _add_years(start, years_run + 1), annual_end)
    term = np.array([15, 20, 25, 30])[rng.integers(0, 4, n)]
    active_end = np.where(long_term, _add_years(start, term), annual_end)
    ended = _add_years(start, np.maximum(1, (rng.random(n) * (years_run - 1)).astype(int)))
    inactive = status != "active"
    end = np.where(inactive & (ended < today), ended, active_end)
    status = np.where(inactive & (ended >= today), "active", status).astype(object)
    serial = rng.permutation(n) + 1
    number = np.array([f"P-{c}-{s:07d}" for c, s in zip(country, serial.tolist(), strict=True)],
                      dtype=object)
    return Policies(holder=holder, number=number, product=product, premium=premium,
                    sum_insured=sum_insured, currency=np.select([cny, country == "US"], ["CNY", "USD"], "EUR").astype(object),
                    status=status, start=start, end=end,
                    has_application=rng.random(n) < p.application_share)


def build_appearances(entities: Entities, rng: np.random.Generator, config: GeneratorConfig,
                      export_date: date) -> tuple[Policies, Appearances]:
    """Decide who appears where: leads, applications, policy parties, claims."""
    p = config.portfolio
    n = len(entities)
    now = np.datetime64(export_date, "D").astype("datetime64[s]")
    is_person = entities["party_type"] == "person"
    lead_only = rng.random(n) < p.lead_only_share
    buyers = np.flatnonzero(~lead_only)
    policies = build_policies(entities, buyers, rng, config, export_date)
    start_s = policies.start.astype("datetime64[s]")

    # --- sales: leads that never bought, leads that converted, and duplicates by channel ------
    first_policy = np.full(n, -1)
    first_policy[policies.holder[::-1]] = np.arange(len(policies.holder))[::-1]
    converted = buyers[rng.random(len(buyers)) < p.buyer_lead_share]
    lead_entity = np.r_[np.flatnonzero(lead_only), converted]
    lead_time = np.r_[
        _times(rng, np.full(int(lead_only.sum()), now - 730 * DAY), np.full(int(lead_only.sum()), now)),
        start_s[first_policy[converted]] - rng.integers(10, 90, len(converted)) * DAY
        + rng.integers(0, 86400, len(converted)).astype("timedelta64[s]"),
    ]
    channel = rng.integers(0, len(CHANNELS), len(lead_entity))
    dup = rng.random(len(lead_entity)) < p.duplicate_lead_rate
    dup_time = np.minimum(lead_time[dup] + rng.integers(-60, 60, int(dup.sum())) * DAY, now - 3600)
    dup_channel = (channel[dup] + rng.integers(1, len(CHANNELS), int(dup.sum()))) % len(CHANNELS)
    interest = np.where(first_policy[lead_entity] >= 0,
                        policies.product[np.maximum(first_policy[lead_entity], 0)],
                        np.where(is_person[lead_entity],
                                 np.array(PERSON_PRODUCTS, dtype=object)[rng.integers(0, 5, len(lead_entity))],
                                 np.array(ORG_PRODUCTS, dtype=object)[rng.integers(0, 4, len(lead_entity))]))
    sales = {
        "entity": np.r_[lead_entity, lead_entity[dup]],
        "time": np.r_[lead_time, dup_time],
        "channel": CHANNELS[np.r_[channel, dup_channel]],
        "product": np.r_[interest, interest[dup]],
        "policy": np.full(len(lead_entity) + int(dup.sum()), -1),
    }

    # --- underwriting: applications behind policies, plus declined / pending ones -------------
    with_app = np.flatnonzero(policies.has_application)
    extra = buyers[rng.random(len(buyers)) < p.extra_application_rate]
    extra_pending = rng.random(len(extra)) < 0.4
    extra_time = np.where(extra_pending,
                          _times(rng, np.full(len(extra), now - 30 * DAY), np.full(len(extra), now)),
                          _times(rng, np.full(len(extra), now - 730 * DAY), np.full(len(extra), now)))
    extra_product = np.where(is_person[extra],
                             np.array(PERSON_PRODUCTS, dtype=object)[rng.integers(0, 5, len(extra))],
                             np.array(ORG_PRODUCTS, dtype=object)[rng.integers(0, 4, len(extra))])
    underwriting = {
        "entity": np.r_[policies.holder[with_app], extra],
        "policy": np.r_[with_app, np.full(len(extra), -1)],
        "time": np.r_[start_s[with_app] - rng.integers(3, 40, len(with_app)) * DAY
                      + rng.integers(0, 86400, len(with_app)).astype("timedelta64[s]"), extra_time],
        "decision": np.r_[np.full(len(with_app), "accepted", dtype=object),
                          np.where(extra_pending, "pending", "declined").astype(object)],
        "product": np.r_[policies.product[with_app], extra_product],
    }

    # --- servicing: one row per (policy, party, role) -------------------------------------------
    n_pol = len(policies.holder)
    holder_is_org = entities["party_type"][policies.holder] == "organization"
    locale = entities["locale"]
    person_buyers = {loc: buyers[is_person[buyers] & (locale[buyers] == loc)]
                     for loc in ("de", "us", "cn") if (locale == loc).any()}

    def random_person(loc_array: np.ndarray) -> np.ndarray:
        out = np.empty(len(loc_array), dtype=int)
        for loc, pool in person_buyers.items():
            mask = loc_array == loc
            out[mask] = pool[rng.integers(0, len(pool), int(mask.sum()))] if len(pool) else -1
        return out

    extra_party = np.flatnonzero(~holder_is_org & (rng.random(n_pol) < p.extra_party_rate))
    ph = policies.holder[extra_party]
    partner = entities["_partner"][ph]
    choice = rng.random(len(extra_party))
    party = np.where((partner >= 0) & (choice < 0.7), partner,
                     np.where(choice < 0.85, ph, random_person(locale[ph])))
    found = party >= 0  # tiny runs may have no other buyer of that locale
    extra_party, ph, party = extra_party[found], ph[found], party[found]
    long_term = np.isin(policies.product[extra_party], list(LONG_TERM))
    extra_role = np.where(long_term & (party != ph), "BEN", "INS").astype(object)
    org_pol = np.flatnonzero(holder_is_org)
    n_ins = rng.poisson(p.group_insured_mean, len(org_pol))
    ins_policy = np.repeat(org_pol, n_ins)
    ins_party = random_person(locale[policies.holder[ins_policy]])
    keep = ins_party >= 0
    ins_policy, ins_party = ins_policy[keep], ins_party[keep]
    sv_policy = np.r_[np.arange(n_pol), extra_party, ins_policy]
    sv_entity = np.r_[policies.holder, party, ins_party]
    sv_role = np.r_[np.full(n_pol, "PH", dtype=object), extra_role,
                    np.full(len(ins_policy), "INS", dtype=object)]
    recent = np.maximum(start_s[sv_policy], now - 3 * 365 * DAY)
    servicing = {"entity": sv_entity, "policy": sv_policy, "role": sv_role,
                 "time": _times(rng, recent, np.full(len(sv_policy), now))}

    # --- claims: on some policies; claimant is the holder, or an insured employee -------------
    n_claims = (rng.random(n_pol) < p.claim_rate) * (1 + (rng.random(n_pol) < 0.1))
    cl_policy = np.repeat(np.arange(n_pol), n_claims)
    claimant = policies.holder[cl_policy].copy()
    org_claim = holder_is_org[cl_policy]
    first_ins = np.full(n_pol, -1)
    first_ins[ins_policy[::-1]] = ins_party[::-1]
    claimant[org_claim] = first_ins[cl_policy[org_claim]]
    keep = claimant >= 0
    cl_policy, claimant = cl_policy[keep], claimant[keep]
    window_start = np.maximum(start_s[cl_policy], now - 3 * 365 * DAY)
    window_end = np.minimum(policies.end[cl_policy].astype("datetime64[s]"), now - 2 * DAY)
    window_end = np.maximum(window_end, window_start + DAY)
    loss = _times(rng, window_start, window_end).astype("datetime64[D]")
    reported = np.minimum(loss + rng.integers(0, 20, len(loss)).astype("timedelta64[D]"),
                          np.datetime64(export_date, "D") - np.timedelta64(1, "D"))
    updated = np.minimum(reported.astype("datetime64[s]") + rng.integers(0, 60 * 86400, len(loss)).astype(
        "timedelta64[s]"), now - 1)
    claims = {"entity": claimant, "policy": cl_policy, "loss_date": loss, "reported_date": reported,
              "time": updated}
    return policies, Appearances(sales=sales, underwriting=underwriting, servicing=servicing,
                                 claims=claims)


def before_event(entity: np.ndarray, time: np.ndarray, selected: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Per record: does it predate a life event (move, marriage) of its entity?

    For each selected entity with at least two records, a cut between its first and last record
    (in time) is drawn; records before the cut still show the old state.
    """
    order = np.lexsort((time, entity))
    sorted_entity = entity[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_entity)) + 1]
    counts = np.diff(np.r_[starts, len(entity)])
    rank = np.arange(len(entity)) - np.repeat(starts, counts)
    cut = 1 + (rng.random(len(starts)) * np.maximum(counts - 1, 1)).astype(int)
    chosen = selected[sorted_entity[starts]] & (counts >= 2)
    old_sorted = np.repeat(chosen, counts) & (rank < np.repeat(cut, counts))
    old = np.empty(len(entity), dtype=bool)
    old[order] = old_sorted
    return old


def multi_record_entities(entity: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(entity, minlength=n) >= 2
