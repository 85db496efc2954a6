"""The fifth export: a broker's claim notifications as JSON Lines (`broker_claims.jsonl`).

One line per notification holds several parties: the insured (a person or a company), a nested
`claimant` (a second person, or null) and a list `co_insured` — each party object with its own
`ref`, so one line gives up to five canonical records (`broker:<ref>` in the truth). The broker
writes what its own screens hold: suffixes in their own field or inside the family name,
one-field names upper-case family first ("MÜLLER Thomas") or given first, a Chinese person's whole
name in `last_name`, company name and legal form in two fields, register numbers in any spelling
("HRB 12345", "HRB12345", "HR B 12345", "Hamburg HRB 12345", UK numbers with or without leading
zeros), companies typed as persons, e-mails in the phone field, "56号" house numbers, country
names in German, the insurer's policy numbers in three spellings, birth names (Geburtsname) and
consent per channel with timestamps. Layout: docs/source_exports.md#broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.entities import Entities, calling_codes
from pipelines.generate.noise import NoiseBook
from pipelines.generate.pools import LEGAL_FORMS, Pools
from pipelines.generate.portfolio import Policies, _times

BROKER_FILE = "broker_claims.jsonl"
COUNTRY_WORDS_DE = {"DE": ["Deutschland", "DE", "Deutschland", "D"], "CN": ["China", "CN", "VR China", "China"],
                    "US": ["USA", "US", "Vereinigte Staaten", "USA"],
                    "GB": ["Großbritannien", "GB", "Vereinigtes Königreich", "UK"]}
GB_CITIES = [("London", "SW1A", "20"), ("Manchester", "M1", "161"), ("Birmingham", "B1", "121"),
             ("Leeds", "LS1", "113"), ("Glasgow", "G1", "141")]
GB_STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Park Avenue", "King Street"]
CHANNELS = np.array(["email", "phone", "post", "sms"], dtype=object)
LANGUAGES = {"de": "de", "en": "en", "cn": "zh", "us": "en", "gb": "en"}


@dataclass
class BrokerParties:
    """Who appears on each notification: entity indices per role (-1: nobody)."""

    policy: np.ndarray            # policy index per notification (-1 for GB companies' own policies)
    insured: np.ndarray           # entity index (GB companies: index into the GB table, see gb_insured)
    gb_insured: np.ndarray        # bool: the insured is one of the broker-only UK companies
    claimant: np.ndarray          # entity index or -1
    co_insured: list[np.ndarray]  # per notification, entity indices (may be empty)
    time: np.ndarray              # reported at (datetime64[s])


def plan_notifications(entities: Entities, policies: Policies, servicing: dict, rng: np.random.Generator,
                       export_date: date, share: float = 0.12) -> BrokerParties:
    """Claim notifications on a share of the policies, with the claimant and co-insured drawn from
    the policy's other parties (servicing INS/BEN rows, household partners, insured employees)."""
    n_pol = len(policies.holder)
    pol = np.flatnonzero(rng.random(n_pol) < share)
    holder = policies.holder[pol]
    # other parties per policy from servicing (role INS/BEN), grouped by policy
    other = servicing["role"] != "PH"
    by_policy: dict[int, list[int]] = {}
    for p, e in zip(servicing["policy"][other].tolist(), servicing["entity"][other].tolist(), strict=True):
        by_policy.setdefault(p, []).append(e)
    partner = entities["_partner"]
    claimant = np.full(len(pol), -1)
    co_insured: list[np.ndarray] = []
    pick = rng.random(len(pol))
    for i, (p, h) in enumerate(zip(pol.tolist(), holder.tolist(), strict=True)):
        parties = [e for e in by_policy.get(p, []) if e != h]
        if partner[h] >= 0 and partner[h] not in parties:
            parties.append(int(partner[h]))
        if parties and pick[i] < 0.65:
            claimant[i] = parties[0]
            parties = parties[1:]
        co_insured.append(np.array(sorted(set(parties))[:3], dtype=int))
    now = np.datetime64(export_date, "D").astype("datetime64[s]")
    time = _times(rng, np.full(len(pol), now - 365 * 86400), np.full(len(pol), now - 1))
    return BrokerParties(policy=pol, insured=holder, gb_insured=np.zeros(len(pol), dtype=bool),
                         claimant=claimant, co_insured=co_insured, time=time)


def gb_companies(rng: np.random.Generator, pools: Pools, n: int) -> dict[str, np.ndarray]:
    """Broker-only UK companies (Companies House numbers, UK addresses and phones)."""
    city = rng.integers(0, len(GB_CITIES), n)
    base = (pools.en_family[rng.integers(0, len(pools.en_family), n)] + " "
            + np.array(["Consulting", "Trading", "Logistics", "Engineering", "Services"], dtype=object)[
                rng.integers(0, 5, n)])
    number = rng.choice(np.arange(10_000, 14_000_000), n, replace=False)
    return {
        "entity_id": np.array([f"G{i + 1:07d}" for i in range(n)], dtype=object),
        "org_name_base": base, "org_legal_form": np.full(n, "LTD", dtype=object),
        "registration_id": np.array([f"{x:08d}" for x in number.tolist()], dtype=object),
        "street": np.array(GB_STREETS, dtype=object)[rng.integers(0, len(GB_STREETS), n)],
        "house_number": rng.integers(1, 200, n).astype(str).astype(object),
        "postcode": np.array([f"{GB_CITIES[c][1]} {d}{a}" for c, d, a in zip(
            city.tolist(), rng.integers(1, 9, n).tolist(),
            np.array(list("ABDEFGHJLNPQRSTUWXYZ"), dtype=object)[rng.integers(0, 20, (n,))].astype(str) + "A",
            strict=True)], dtype=object),
        "city": np.array([GB_CITIES[c][0] for c in city.tolist()], dtype=object),
        "landline": np.array([f"+44{GB_CITIES[c][2]}{s}" for c, s in zip(
            city.tolist(), rng.integers(2_000_000, 9_999_999, n).tolist(), strict=True)], dtype=object),
        "email": np.array([f"office@{b.lower().replace(' ', '')}.co.uk" for b in base], dtype=object),
    }


def register_spellings(reg: np.ndarray, kind: np.ndarray, city: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """'HRB 12345' as 'HRB 12345', 'HRB12345', 'HR B 12345', 'Hamburg HRB 12345'; UK numbers with
    or without their leading zeros; other IDs as they are."""
    style = rng.integers(0, 4, len(reg))
    out = reg.copy()
    for i in np.flatnonzero((kind == "de_handelsregister") & (reg != None)).tolist():  # noqa: E711
        prefix, number = str(reg[i]).split(" ", 1)
        out[i] = [f"{prefix} {number}", f"{prefix}{number}", f"HR {prefix[2]} {number}",
                  f"{city[i]} {prefix} {number}"][style[i]]
    uk = (kind == "gb_company_number") & (reg != None)  # noqa: E711
    out[uk & (style < 2)] = [str(v).lstrip("0") for v in reg[uk & (style < 2)]]
    return out


def policy_spellings(numbers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The insurer's 'P-DE-0002177' as the broker keys it: 'P-DE-0002177', 'PDE0002177' or
    'P DE 2177' (separators dropped or spaced, leading zeros dropped)."""
    style = rng.integers(0, 3, len(numbers))
    out = np.array(numbers, dtype=object, copy=True)
    for i, number in enumerate(numbers.tolist()):
        prefix, country, serial = number.split("-")
        if style[i] == 1:
            out[i] = f"{prefix}{country}{serial}"
        elif style[i] == 2:
            out[i] = f"{prefix} {country} {int(serial)}"
    return out


def country_words(country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pick = rng.integers(0, 4, len(country))
    return np.array([COUNTRY_WORDS_DE.get(c, [c])[p % len(COUNTRY_WORDS_DE.get(c, [c]))]
                     for c, p in zip(country, pick.tolist(), strict=True)], dtype=object)


def consent_columns(consent: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> dict[str, pa.Array]:
    """Per-channel consent with the moment it was given or withdrawn (UTC), channel and language."""
    n = len(consent)
    unknown = np.array([None, False], dtype=object)[(rng.random(n) < 0.5).astype(int)]
    email = np.where(consent == None, unknown, consent)  # noqa: E711
    phone = np.array([True, False, None], dtype=object)[rng.choice(3, n, p=[0.3, 0.5, 0.2])]
    at = times - rng.integers(1, 3 * 365, n).astype("timedelta64[D]").astype("timedelta64[s]")
    stamp = np.datetime_as_string(at, unit="s").astype(object) + "Z"
    phone_at = np.datetime_as_string(at - rng.integers(0, 400, n).astype("timedelta64[D]").astype("timedelta64[s]"),
                                     unit="s").astype(object) + "Z"
    return {"consent_email": pa.array(email, pa.bool_(), from_pandas=True),
            "consent_email_at": pa.array(np.where(email == None, None, stamp), pa.string(), from_pandas=True),  # noqa: E711
            "consent_phone": pa.array(phone, pa.bool_(), from_pandas=True),
            "consent_phone_at": pa.array(np.where(phone == None, None, phone_at), pa.string(), from_pandas=True),  # noqa: E711
            "preferred_channel": pa.array(CHANNELS[rng.choice(4, n, p=[0.5, 0.25, 0.15, 0.1])], pa.string())}


def short_legal_forms(codes: np.ndarray) -> np.ndarray:
    return np.array([LEGAL_FORMS[c][0] if c in LEGAL_FORMS else c for c in codes], dtype=object)


def written_phone(e164: np.ndarray, country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """International ('+49 151 2345678') or domestic ('0151 2345678') as the broker's clerks type."""
    domestic = rng.random(len(e164)) < 0.5
    cc = calling_codes(country)
    out = e164.copy()
    for i in np.flatnonzero(e164 != None).tolist():  # noqa: E711
        national = str(e164[i])[1 + len(cc[i]):]
        out[i] = (("" if country[i] in ("CN", "US") else "0") + national) if domestic[i] else f"+{cc[i]} {national}"
    return out


def new_book(rng: np.random.Generator, config: GeneratorConfig, n: int) -> NoiseBook:
    return NoiseBook(rng, config.noise, n)


__all__ = ["BROKER_FILE", "BrokerParties", "gb_companies", "plan_notifications", "policy_spellings",
           "register_spellings"]


# --- rendering --------------------------------------------------------------------------------

SUFFIX_SPELLINGS = {"Jr.": ["JR", "jun.", "Jr."], "Sr.": ["SR", "sen.", "Sr."]}


def _party_columns(entities: Entities, idx: np.ndarray, refs: np.ndarray, role: str, pools: Pools,
                   config: GeneratorConfig, rng: np.random.Generator, times: np.ndarray):
    """The fields of one role's party objects, and the noise book of those records."""
    from pipelines.generate.kinds import apply_other_names
    from pipelines.generate.render import (
        RecordView,
        _typo_into,
        as_strings,
        birth_dates,
        blank_one,
        company_as_person,
        dates_as,
        join,
        latin_person_names,
        where,
    )

    n = len(idx)
    book = NoiseBook(rng, config.noise, n)
    view = RecordView(entities, idx, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    given, family, person = latin_person_names(view, pools, book, rng, nickname_ok=True)
    org = ~person
    cn_person = person & (view["name_origin"] == "cn")
    hanzi = cn_person & (rng.random(n) < 0.5)
    given = where(hanzi, view["given_name"], given)
    family = where(hanzi, view["family_name"], family)
    apply_other_names(view, book, config, given, family, person & ~hanzi)
    _typo_into(rng, np.flatnonzero(book.choose("typo", person & ~hanzi)), person, [given, family], [])
    suffix = view["name_suffix"]
    spelled = np.array([SUFFIX_SPELLINGS[s][k] if s in SUFFIX_SPELLINGS else None
                        for s, k in zip(suffix, rng.integers(0, 3, n).tolist(), strict=True)], dtype=object)
    in_family = person & (suffix != None) & (rng.random(n) < 0.5)  # noqa: E711  ("Smith Jr.")
    family = where(in_family, join(family, suffix, sep=" "), family)
    suffix_column = where(in_family, None, spelled)
    whole = book.choose_kind("full_name_in_family_field", cn_person, 0.3)
    whole_name = where(hanzi, join(family, given), join(family, given, sep=" "))
    family = where(whole, whole_name, family)
    given = where(whole, None, given)
    cols: dict[str, pa.Array] = {"ref": as_strings(refs)}
    if role == "claimant":  # one name field: 'MÜLLER Thomas' (family first, upper case) or given first
        upper = pc.utf8_upper(as_strings(family))
        one = where(rng.random(n) < 0.4, join(upper, given, sep=" "), join(given, family, sep=" "))
        cols["name"] = as_strings(where(hanzi, view["name_native"], where(given == None, family, one)))  # noqa: E711
    else:
        cols["type"] = as_strings(np.where(person, "P", "C").astype(object))
        cols["last_name"] = as_strings(where(person, family, None))
        cols["first_name"] = as_strings(where(person, given, None))
    cols["name_suffix"] = as_strings(where(person, suffix_column, None))
    married = view.mask("_married", True)
    cols["birth_name"] = as_strings(where(married, view.e["_maiden"][idx], None))
    dob = birth_dates(view, book)
    e164_mobile, e164_landline = view["e164_mobile"], view["e164_landline"]
    country = view["country"]
    phone = written_phone(where(e164_mobile != None, e164_mobile, e164_landline), country, rng)  # noqa: E711
    email = view["email"].copy()
    wrong = book.choose("wrong_column", (email != None) & (phone != None))  # noqa: E711
    phone[wrong] = email[wrong]  # the e-mail typed into the phone field
    email[wrong] = None
    fields = {"birth_date": dob, "email": email, "phone": phone}
    blank_one(book, rng, fields)
    cols["birth_date"] = as_strings(dates_as(fields["birth_date"], "dmy"))
    if role == "insured":
        cn = country == "CN"
        native = view["org_name_native"]
        use_hanzi = org & cn & (native != None) & (rng.random(n) < 0.5)  # noqa: E711
        name = where(use_hanzi, np.array([v[:-4] if v else v for v in native], dtype=object), view["org_name_base"])
        form = where(use_hanzi, "有限公司", short_legal_forms(np.where(org, view["org_legal_form"], "GMBH")))
        full = join(name, form, sep=" ")
        as_person, first, rest = company_as_person(book, config, org, full, rate=0.15)
        cols["type"] = as_strings(np.where(person | as_person, "P", "C").astype(object))
        cols["last_name"] = as_strings(where(person, family, where(as_person, rest, None)))
        cols["first_name"] = as_strings(where(person, given, where(as_person, first, None)))
        cols["company_name"] = as_strings(where(org & ~as_person, name, None))
        cols["legal_form"] = as_strings(where(org & ~as_person, form, None))
        reg = where(view["_registration_hidden"], None, view["registration_id"])
        cols["register_number"] = as_strings(where(org, register_spellings(
            reg, view["registration_type"], view["city"], rng), None))
    cols["email"] = as_strings(fields["email"])
    cols["phone"] = as_strings(fields["phone"])
    cn = country == "CN"
    street_hanzi = cn & (rng.random(n) < 0.5)
    cols["street"] = as_strings(where(street_hanzi, view["street_native"], view["street"]))
    cols["house_number"] = as_strings(where(street_hanzi, join(view["house_number"], "号"), view["house_number"]))
    cols["postcode"] = as_strings(view["postcode"])
    cols["city"] = as_strings(where(street_hanzi, view["city_native"], view["city"]))
    cols["country"] = as_strings(country_words(country, rng))
    cols.update(consent_columns(view["marketing_consent"], times, rng))
    cols["language"] = as_strings(np.array([LANGUAGES.get(o or loc, "de") for o, loc in zip(
        view["name_origin"], view["locale"], strict=True)], dtype=object))
    return cols, book


def _gb_columns(gb: dict[str, np.ndarray], idx: np.ndarray, refs: np.ndarray, rng: np.random.Generator,
                times: np.ndarray, template: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Party objects of the broker-only UK companies, with the insured schema."""
    n = len(idx)
    kind = np.full(n, "gb_company_number", dtype=object)
    values = {"ref": refs, "type": np.full(n, "C", dtype=object), "company_name": gb["org_name_base"][idx],
              "legal_form": np.array(["Ltd", "Limited", "LTD"], dtype=object)[rng.integers(0, 3, n)],
              "register_number": register_spellings(gb["registration_id"][idx], kind, gb["city"][idx], rng),
              "email": gb["email"][idx], "phone": np.where(rng.random(n) < 0.5, gb["landline"][idx],
                                                            ["0" + p[3:] for p in gb["landline"][idx]]),
              "street": gb["street"][idx], "house_number": gb["house_number"][idx],
              "postcode": gb["postcode"][idx], "city": gb["city"][idx],
              "country": country_words(np.full(n, "GB", dtype=object), rng),
              "language": np.full(n, "en", dtype=object)}
    consent = consent_columns(np.full(n, None, dtype=object), times, rng)
    out = {}
    for name, column in template.items():
        if name in consent:
            out[name] = consent[name]
        elif name in values:
            out[name] = pa.array(values[name], pa.string(), from_pandas=True)
        else:
            out[name] = pa.nulls(n, column.type)
    return out


def render_broker(entities: Entities, policies: Policies, servicing: dict, pools: Pools,
                  config: GeneratorConfig, rng: np.random.Generator, export_date: date):
    """The broker export table and one truth row per party object (source `broker`)."""
    from pipelines.generate.render import as_strings, iso_dates, timestamps

    parties = plan_notifications(entities, policies, servicing, rng, export_date)
    m = len(parties.policy)
    n_gb_companies = max(3, m // 40)
    gb = gb_companies(rng, pools, n_gb_companies)
    gb_rows = np.sort(rng.integers(0, n_gb_companies, n_gb_companies * 2))  # 1-3 notifications each
    total = m + len(gb_rows)
    serial = rng.permutation(total) + 1
    ids = np.array([f"BRK-{s:07d}" for s in serial.tolist()], dtype=object)
    now = np.datetime64(export_date, "D").astype("datetime64[s]")
    times = np.r_[parties.time, _times(rng, np.full(len(gb_rows), now - 365 * 86400), np.full(len(gb_rows), now - 1))]

    insured_cols, insured_book = _party_columns(entities, parties.insured, ids[:m] + "-I", "insured", pools,
                                                config, rng, times[:m])
    gb_cols = _gb_columns(gb, gb_rows, ids[m:] + "-I", rng, times[m:], insured_cols)
    insured = pa.StructArray.from_arrays([pa.concat_arrays([insured_cols[k], gb_cols[k]]) for k in insured_cols],
                                         names=list(insured_cols))
    has_claimant = np.r_[parties.claimant >= 0, np.zeros(len(gb_rows), dtype=bool)]
    claimant_rows = np.flatnonzero(has_claimant)
    claimant_cols, claimant_book = _party_columns(entities, parties.claimant[claimant_rows[claimant_rows < m]],
                                                  ids[claimant_rows] + "-C", "claimant", pools, config, rng,
                                                  times[claimant_rows])
    claimant = _scatter(claimant_cols, claimant_rows, total)
    co_counts = np.r_[[len(c) for c in parties.co_insured], np.zeros(len(gb_rows), dtype=int)]
    co_entity = np.concatenate(parties.co_insured + [np.zeros(0, dtype=int)]).astype(int)
    co_row = np.repeat(np.arange(total), co_counts)
    co_rank = np.arange(len(co_row)) - np.repeat(np.r_[0, np.cumsum(co_counts)[:-1]], co_counts)
    co_refs = ids[co_row] + "-K" + (co_rank + 1).astype(str).astype(object)
    co_cols, co_book = _party_columns(entities, co_entity, co_refs, "co_insured", pools, config, rng, times[co_row])
    co_struct = pa.StructArray.from_arrays(list(co_cols.values()), names=list(co_cols))
    co_insured = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(co_counts)].astype(np.int32)), co_struct)

    policy_no = np.r_[policies.number[parties.policy], np.array([f"P-GB-{g + 1:07d}" for g in gb_rows], dtype=object)]
    product = np.r_[policies.product[parties.policy], np.full(len(gb_rows), "LIABILITY", dtype=object)]
    currency = np.r_[policies.currency[parties.policy], np.full(len(gb_rows), "GBP", dtype=object)]
    premium = np.r_[policies.premium[parties.policy], np.full(len(gb_rows), 4000.0)]
    amount = np.round(premium * rng.lognormal(0.3, 0.9, total), 2)
    loss = (times - rng.integers(1, 40, total).astype("timedelta64[D]").astype("timedelta64[s]")).astype("datetime64[D]")
    table = pa.table({
        "notification_id": as_strings(ids),
        "policy_ref": as_strings(policy_spellings(policy_no, rng)),
        "product": as_strings(product),
        "loss_date": as_strings(iso_dates(loss)),
        "reported_at": as_strings(timestamps(times, sep="T")),
        "claimed_amount": pa.array(amount, pa.float64()),
        "currency": as_strings(currency),
        "status": as_strings(np.array(["open", "in_review", "settled", "rejected"], dtype=object)[
            rng.choice(4, total, p=[0.4, 0.3, 0.2, 0.1])]),
        "insured": insured, "claimant": claimant, "co_insured": co_insured,
    })
    truth = _broker_truth(entities, gb, parties, m, gb_rows, ids, claimant_rows, co_entity, co_refs,
                          insured_book, claimant_book, co_book)
    return table, truth, gb


def _scatter(cols: dict[str, pa.Array], rows: np.ndarray, total: int) -> pa.StructArray:
    """Party objects placed at `rows` of `total` notifications; null elsewhere."""
    position = np.full(total, -1)
    position[rows] = np.arange(len(rows))
    take = pa.array(np.where(position >= 0, position, 0))
    arrays = [pc.take(c, take) for c in cols.values()]
    return pa.StructArray.from_arrays(arrays, names=list(cols), mask=pa.array(position < 0))


def _broker_truth(entities: Entities, gb, parties: BrokerParties, m: int, gb_rows: np.ndarray, ids: np.ndarray,
                  claimant_rows: np.ndarray, co_entity: np.ndarray, co_refs: np.ndarray,
                  insured_book: NoiseBook, claimant_book: NoiseBook, co_book: NoiseBook) -> pa.Table:
    from pipelines.generate.noise import ENTITY_KINDS, NOISE_KINDS, RECORD_KINDS

    def block(keys, entity_idx, book) -> dict[str, list]:
        party, hard = entities["party_type"][entity_idx], entities["hard_case"][entity_idx]
        level = {"organization": party == "organization", "company_owner": hard == "company_owner",
                 "related_company": hard == "related_company"}
        noise = [[k for k in NOISE_KINDS if book.applied[k][i]] for i in range(len(keys))]
        kinds = [noise[i] + [k for k in RECORD_KINDS if book.applied[k][i]] + [k for k in ENTITY_KINDS if level[k][i]]
                 for i in range(len(keys))]
        return {"source_key": list(keys), "entity_id": list(entities["entity_id"][entity_idx]),
                "party_type": list(party), "hard_case": list(hard),
                "hard_case_group": list(entities["hard_case_group"][entity_idx]), "noise": noise, "kinds": kinds}

    # keys as a mapping with `native_key: notification_id` and `records:` parts `claimant` and
    # `co_insured` (each keyed by its `ref`) names them: '<row key>/<part>/<element key>'
    co_row = np.array([str(r).rsplit("-", 1)[0] for r in co_refs], dtype=object)
    parts = [block(ids[:m], parties.insured, insured_book),
             block(ids[claimant_rows] + "/claimant/" + ids[claimant_rows] + "-C", parties.claimant[claimant_rows],
                   claimant_book),
             block(co_row + "/co_insured/" + co_refs, co_entity, co_book)]
    n_gb = len(gb_rows)
    parts.append({"source_key": list(ids[m:]), "entity_id": list(gb["entity_id"][gb_rows]),
                  "party_type": ["organization"] * n_gb, "hard_case": [None] * n_gb, "hard_case_group": [None] * n_gb,
                  "noise": [[] for _ in range(n_gb)], "kinds": [["organization"] for _ in range(n_gb)]})
    merged = {k: sum((p[k] for p in parts), []) for k in parts[0]}
    keys = pa.array(merged["source_key"], pa.string())
    return pa.table({
        "source_system": pa.array(["broker"] * len(keys), pa.string()),
        "source_key": keys,
        "source_record_id": pc.binary_join_element_wise("broker:", keys, ""),
        "entity_id": pa.array(merged["entity_id"], pa.string()),
        "party_type": pa.array(merged["party_type"], pa.string()),
        "hard_case": pa.array(merged["hard_case"], pa.string()),
        "hard_case_group": pa.array(merged["hard_case_group"], pa.string()),
        "noise": pa.array(merged["noise"], pa.list_(pa.string())),
        "kinds": pa.array(merged["kinds"], pa.list_(pa.string())),
    })


def gb_entity_truth(gb: dict[str, np.ndarray]) -> pa.Table:
    """Entity rows of the broker-only UK companies (the other entity columns are null)."""
    n = len(gb["entity_id"])
    return pa.table({
        "entity_id": pa.array(gb["entity_id"], pa.string()), "party_type": pa.array(["organization"] * n),
        "locale": pa.array(["gb"] * n), "country": pa.array(["GB"] * n),
        "org_name": pa.array([f"{b} Ltd" for b in gb["org_name_base"]]),
        "org_legal_form": pa.array(gb["org_legal_form"], pa.string()),
        "registration_id": pa.array(gb["registration_id"], pa.string()),
        "registration_type": pa.array(["gb_company_number"] * n),
        "street": pa.array(gb["street"], pa.string()), "house_number": pa.array(gb["house_number"], pa.string()),
        "postcode": pa.array(gb["postcode"], pa.string()), "city": pa.array(gb["city"], pa.string()),
        "phone_landline": pa.array(gb["landline"], pa.string()), "email": pa.array(gb["email"], pa.string()),
    })
