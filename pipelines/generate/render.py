"""Write each system's rows in its own shape, naming and format conventions, noise included.

One `render_<source>` per export of docs/source_exports.md. Each takes the rows that system holds
(entity index, policy, times) and returns a `Rendered`: the export columns as an Arrow table, the
native keys, and the noise applied per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.entities import Entities, ascii_fold, calling_codes
from pipelines.generate.identifiers import (
    corrupt_check_character,
    format_phones,
    format_us_phones,
    int_strings,
)
from pipelines.generate.kinds import apply_other_names
from pipelines.generate.noise import (
    NoiseBook,
    pick_present_field,
    swap_day_month,
    swappable_birth_dates,
    typos,
)
from pipelines.generate.pools import LEGAL_FORMS, Pools
from pipelines.generate.portfolio import Policies

SALES_NOTES = np.array([
    None, None, None, "Rückruf erbeten, ab 18 Uhr", "Interested in term life,\ncall back next week",
    "Kunde wünscht Angebot per E-Mail", "Referred by partner, wants quote", "客户要求回电",
    "Hat bereits Police bei Wettbewerber,\nVertrag läuft aus", "Asked about \"family discount\", "
    "sent brochure", "Termin in Filiale vereinbart", "想了解团体险"], dtype=object)
US_SALES_NOTES = np.array([
    None, None, None, "Call back after 6pm", "Interested in term life,\ncall back next week",
    "Wants quote by e-mail", "Referred by partner, wants quote", "Asked about \"family discount\", sent brochure",
    "Has a policy with a competitor,\nrenewal in March", "Appointment at branch booked"], dtype=object)
COUNTRY_WORDS = {"DE": np.array(["DE", "Germany", "Deutschland", "DE"], dtype=object),
                 "CN": np.array(["CN", "China", "PRC", "CN"], dtype=object),
                 "US": np.array(["US", "USA", "United States", "US"], dtype=object)}
CURRENCIES = {"DE": "EUR", "CN": "CNY", "US": "USD"}


@dataclass
class Rendered:
    table: pa.Table
    keys: np.ndarray
    entity: np.ndarray
    noise: NoiseBook


def as_strings(values) -> pa.Array:
    """numpy object array (None = null) -> Arrow string array."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    return pa.array(values, type=pa.string(), from_pandas=True)


def as_objects(values) -> np.ndarray:
    """Arrow array -> numpy object array with None for nulls."""
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)


def join(*parts, sep: str = "") -> np.ndarray:
    """Element-wise concatenation; null if any part is null."""
    return as_objects(pc.binary_join_element_wise(*[as_strings(p) if isinstance(p, np.ndarray) else p for p in parts], sep))


def iso_dates(days: np.ndarray) -> np.ndarray:
    text = np.datetime_as_string(days.astype("datetime64[D]")).astype(object)
    text[np.isnat(days)] = None
    return text


def dates_as(days: np.ndarray, style: str) -> np.ndarray:
    """'iso' 1985-03-14, 'dmy' 14.03.1985, 'mdy' 03/14/1985, 'compact' 19850314."""
    iso = as_strings(iso_dates(days))
    y, m, d = (pc.utf8_slice_codeunits(iso, a, b) for a, b in [(0, 4), (5, 7), (8, 10)])
    if style == "iso":
        return as_objects(iso)
    if style == "dmy":
        return as_objects(pc.binary_join_element_wise(d, m, y, "."))
    if style == "mdy":
        return as_objects(pc.binary_join_element_wise(m, d, y, "/"))
    return as_objects(pc.binary_join_element_wise(y, m, d, ""))


def timestamps(times: np.ndarray, sep: str = " ") -> np.ndarray:
    text = np.datetime_as_string(times.astype("datetime64[s]"), unit="s")
    return as_objects(pc.replace_substring(pa.array(text.astype(object), pa.string()), "T", sep))


def decimal_comma(amounts: np.ndarray) -> np.ndarray:
    cents = np.round(amounts * 100).astype(np.int64)
    whole = pa.array((cents // 100).astype(str).astype(object), pa.string())
    return join(whole, ",", int_strings(cents % 100, 2))


def decimal_point(amounts: np.ndarray) -> np.ndarray:
    cents = np.round(amounts * 100).astype(np.int64)
    whole = pa.array((cents // 100).astype(str).astype(object), pa.string())
    return join(whole, ".", int_strings(cents % 100, 2))


def where(mask: np.ndarray, a, b) -> np.ndarray:
    out = np.array(b, dtype=object, copy=True) if isinstance(b, np.ndarray) else np.full(len(mask), b, dtype=object)
    a_arr = a if isinstance(a, np.ndarray) else np.full(len(mask), a, dtype=object)
    out[mask] = a_arr[mask]
    return out


class RecordView:
    """Entity attributes as one system saw them at the time of each record (moves, marriage)."""

    def __init__(self, entities: Entities, entity: np.ndarray, old_address: np.ndarray,
                 maiden: np.ndarray, new_mobile: np.ndarray | None = None) -> None:
        self.e = entities
        self.idx = entity
        self.old_address = old_address
        self.maiden = maiden
        # records a customer updated on a later night: they show the new mobile number
        self.new_mobile = new_mobile if new_mobile is not None else np.zeros(len(entity), dtype=bool)

    def __getitem__(self, name: str) -> np.ndarray:
        current = self.e[name][self.idx]
        old_name = f"_old_{name}"
        if old_name in self.e.columns and self.old_address.any():
            current = where(self.old_address, self.e[old_name][self.idx], current)
        if name in ("family_name", "family_name_latin") and self.maiden.any():
            current = where(self.maiden, self.e["_maiden"][self.idx], current)
        if name in ("mobile_ndc", "mobile_sub") and self.new_mobile.any():
            current = where(self.new_mobile, self.e[f"_new_{name}"][self.idx], current)
        return current

    def mask(self, name: str, value) -> np.ndarray:
        return self.e[name][self.idx] == value


def life_events(entities: Entities, pools: Pools, rng: np.random.Generator) -> None:
    """Give every entity an earlier address/phones and, for German women, a maiden name.

    Which records show the earlier state is decided per record later (`before_event`).
    """
    cols = entities.columns
    n = len(entities)
    same_city = rng.random(n) < 0.6
    street_i = rng.integers(0, len(pools.de_streets), n)
    cn_street_i = rng.integers(0, len(pools.cn_streets), n)
    is_cn = cols["country"] == "CN"
    cols["_old_street"] = np.where(is_cn, pools.cn_streets_pinyin[cn_street_i], pools.de_streets[street_i])
    cols["_old_street_native"] = np.where(is_cn, pools.cn_streets[cn_street_i], None)  # type: ignore[call-overload]
    cols["_old_house_number"] = rng.integers(1, 160, n).astype(str).astype(object)
    tail = np.char.zfill(rng.integers(0, 1000, n).astype(str), 3).astype(object)
    prefix = np.array([p[:-3] for p in cols["postcode"]], dtype=object)
    other = rng.permutation(n)  # another entity's city (same country) for long-distance moves
    other_ok = cols["country"][other] == cols["country"]
    moved_far = ~same_city & other_ok
    cols["_old_postcode"] = where(moved_far, np.array([p[:-3] for p in cols["postcode"][other]],
                                                      dtype=object), prefix) + tail
    for c in ["city", "city_native", "district", "district_native", "state"]:
        cols[f"_old_{c}"] = where(moved_far, cols[c][other], cols[c])
    cols["_old__zip4"] = np.full(n, None, dtype=object)  # the old address's ZIP+4 is not known
    us = cols["country"] == "US"
    if us.any():  # drawn only for US populations, so the default stays byte-identical
        cols["_old_street"][us] = pools.us_streets[rng.integers(0, len(pools.us_streets), int(us.sum()))]
    cols["_old_landline_ndc"] = where(moved_far, cols["_landline_area"][other], cols["landline_ndc"])
    has_landline = cols["landline_sub"] != None  # noqa: E711
    # the old line had the old area's number length; change its last digits so it is another line
    base_sub = where(moved_far, cols["_landline_sub_all"][other], cols["_landline_sub_all"])
    old_sub = np.array([s[:-3] + f"{(int(s[-3:]) + k) % 1000:03d}" if s else None
                        for s, k in zip(base_sub, rng.integers(1, 999, n).tolist(), strict=True)],
                       dtype=object)
    cols["_old_landline_sub"] = where(has_landline, old_sub, None)
    cols["_old_landline_ndc"] = where(has_landline, cols["_old_landline_ndc"], None)
    # a third of movers also changed their mobile number
    # a third of movers also changed their mobile number (same prefix, digits rotated)
    new_mobile = rng.random(n) < 0.33
    rotated = np.array([s[1:] + s[0] if s else None for s in cols["mobile_sub"]], dtype=object)
    cols["_old_mobile_sub"] = where(new_mobile & (rotated != cols["mobile_sub"]), rotated, cols["mobile_sub"])
    en = cols["name_origin"] == "en"
    pick = rng.integers(0, 10**6, n)
    maiden = np.where(en, pools.en_family[pick % len(pools.en_family)], pools.de_family[pick % len(pools.de_family)])
    same = maiden == cols["family_name"]
    maiden[same] = np.where(en[same], pools.en_family[(pick[same] + 1) % len(pools.en_family)],
                            pools.de_family[(pick[same] + 1) % len(pools.de_family)])
    cols["_maiden"] = maiden


# --- shared name and contact rendering ----------------------------------------------------------

def latin_person_names(view: RecordView, pools: Pools, book: NoiseBook, rng, *,
                       nickname_ok: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Given and family name in Latin script with nickname and typo noise; returns mask of persons."""
    person = view.mask("party_type", "person")
    given = view["given_name_latin"].copy()
    family = view["family_name_latin"].copy()
    if nickname_ok:
        lower = np.array([g.lower() if g else "" for g in given], dtype=object)
        has_nick = person & np.array([g in pools.nicknames for g in lower], dtype=bool) & (
            view["name_origin"] != "cn")
        chosen = np.flatnonzero(book.choose("nickname", has_nick))
        pick = rng.random(len(chosen))
        for i, r in zip(chosen.tolist(), pick.tolist(), strict=True):
            options = pools.nicknames[lower[i]]
            given[i] = options[int(r * len(options))]
    return given, family, person


def org_names(view: RecordView, book: NoiseBook, rng, hanzi_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Organization names as written: hanzi for some Chinese firms, legal-form variants."""
    org = view.mask("party_type", "organization")
    base, form = view["org_name_base"], view["org_legal_form"]
    native = view["org_name_native"]
    use_hanzi = org & (native != None) & (rng.random(len(org)) < hanzi_share)  # noqa: E711
    variant = book.choose("legal_form_variant", org & ~use_hanzi)
    short = {code: forms[0] for code, forms in LEGAL_FORMS.items()}
    r = rng.random(len(org))
    written = np.full(len(org), None, dtype=object)
    for i in np.flatnonzero(org).tolist():
        code = form[i]
        if use_hanzi[i]:
            written[i] = native[i]
        elif variant[i]:
            options = LEGAL_FORMS[code][1]
            written[i] = f"{base[i]} {options[int(r[i] * len(options))]}"
        else:
            written[i] = f"{base[i]} {short[code]}"
    return written, org


def phone_parts(view: RecordView, kind: str) -> tuple[pa.Array, pa.Array, pa.Array]:
    cc = calling_codes(view["country"])
    return as_strings(cc), as_strings(view[f"{kind}_ndc"]), as_strings(view[f"{kind}_sub"])


def phones_written(view: RecordView, kind: str, style: np.ndarray) -> np.ndarray:
    cc, ndc, sub = phone_parts(view, kind)
    is_cn = np.asarray(view["country"] == "CN", dtype=bool)
    written = format_phones(style, cc, ndc, sub, is_cn, is_mobile=kind == "mobile")
    is_us = np.asarray(view["country"] == "US", dtype=bool)
    if is_us.any():
        written = pc.if_else(pa.array(is_us), format_us_phones(style, ndc, sub), written)
    return as_objects(written)


def street_lines(view: RecordView) -> np.ndarray:
    """'Hauptstraße 12' in Germany (and pinyin streets), '1234 Maple Ave' in the US."""
    de_style = join(view["street"], view["house_number"], sep=" ")
    us = view["country"] == "US"
    return where(us, join(view["house_number"], view["street"], sep=" "), de_style) if us.any() else de_style


def zip_codes(view: RecordView, rng, zip4_share: float) -> np.ndarray:
    """Postcodes as written; a US system writes ZIP+4 (62704-1234) for some records."""
    postcode = view["postcode"]
    zip4 = view["_zip4"]
    if not (zip4 != None).any():  # noqa: E711
        return postcode
    return where((zip4 != None) & (rng.random(len(postcode)) < zip4_share), join(postcode, zip4, sep="-"),  # noqa: E711
                 postcode)


def ids_written(view: RecordView, ids: np.ndarray, rng) -> np.ndarray:
    """SSNs come with dashes (123-45-6789) or, from older screens, without (123456789)."""
    ssn = (view["national_id_type"] == "us_ssn") & (ids != None)  # noqa: E711
    if not ssn.any():
        return ids
    bare = ssn & (rng.random(len(ids)) < 0.3)
    return where(bare, np.array([v.replace("-", "") if v else v for v in ids], dtype=object), ids)


def birth_name_column(view: RecordView, config: GeneratorConfig) -> dict[str, pa.Array]:
    """Geburtsname: a married woman's birth surname beside her current one (records after the
    marriage); empty when it equals the surname. Only when `exports.underwriting_birth_name`."""
    if not config.exports.underwriting_birth_name:
        return {}
    after = view.mask("_married", True) & ~view.maiden
    return {"birth_name": as_strings(where(after, view.e["_maiden"][view.idx], None))}


def written_date_style(config: GeneratorConfig, usual: str) -> str:
    """US systems write MM/DD/YYYY; elsewhere each system keeps its own style."""
    return "mdy" if config.population.western_country == "US" else usual


def state_column(name: str, view: RecordView, config: GeneratorConfig) -> dict[str, pa.Array]:
    """A US export has a state column; others have none (so their layout stays as it was)."""
    if config.population.western_country != "US":
        return {}
    return {name: as_strings(view["state"])}


def country_words(country: np.ndarray, rng) -> np.ndarray:
    """Country as a CRM user types it: code or name ('DE', 'Deutschland', 'USA', 'PRC')."""
    cn_pick, other_pick = rng.integers(0, 4, len(country)), rng.integers(0, 4, len(country))
    out = COUNTRY_WORDS["CN"][cn_pick]
    for code in ("DE", "US"):
        mask = country == code
        out[mask] = COUNTRY_WORDS[code][other_pick[mask]]
    return out


def currencies(country: np.ndarray) -> np.ndarray:
    out = np.full(len(country), CURRENCIES["DE"], dtype=object)
    for code, currency in CURRENCIES.items():
        out[country == code] = currency
    return out


def birth_dates(view: RecordView, book: NoiseBook, carried: np.ndarray | None = None) -> np.ndarray:
    """Birth dates the system holds (`carried` says which records have one at all), day/month noise."""
    dob = view["birth_date"].astype("datetime64[D]").copy()
    if carried is not None:
        dob[~carried] = np.datetime64("NaT")
    swap = book.choose("swapped_day_month", swappable_birth_dates(dob))
    dob = dob.copy()
    dob[swap] = swap_day_month(dob[swap])
    return dob


def blank_one(book: NoiseBook, rng, fields: dict[str, np.ndarray]) -> None:
    """Missing-field noise: null one present field of the chosen records (in place)."""
    names = list(fields)
    present = np.column_stack([np.array([v is not None for v in fields[f]], dtype=bool)
                               if fields[f].dtype == object else ~np.isnat(fields[f]) for f in names])
    chosen = book.choose("missing_field", present.any(axis=1))  # type: ignore[arg-type]
    which = pick_present_field(rng, present)
    for k, name in enumerate(names):
        rows = chosen & (which == k)
        fields[name][rows] = None if fields[name].dtype == object else np.datetime64("NaT")


def corrupt_ids(book: NoiseBook, rng, ids: np.ndarray, checksummed: np.ndarray,
                view: RecordView | None = None) -> None:
    eligible = checksummed & np.array([v is not None for v in ids], dtype=bool)
    if view is not None:  # an SSN has no check digit: a mistyped one is just another number
        eligible &= view["national_id_type"] != "us_ssn"
    chosen = np.flatnonzero(book.choose("invalid_id_checksum", eligible))
    ids[chosen] = corrupt_check_character(rng, list(ids[chosen]))


def keys(prefix: str, n: int, rng, width: int) -> np.ndarray:
    """Native keys: a random permutation of serial numbers, so row order leaks nothing."""
    serial = rng.permutation(n) + 1 + rng.integers(0, 10**(width - 1) // 2)
    return join(prefix, int_strings(serial, width))


def start_records(rows, entities: Entities, config: GeneratorConfig, rng, old_address: np.ndarray,
                  maiden: np.ndarray) -> tuple[int, RecordView, NoiseBook]:
    """What every system's rendering starts from: the row count, the entities' values as this
    system sees them (before or after a move or marriage), and a noise book with the life events
    already labelled."""
    n = len(rows["entity"])
    book = NoiseBook(rng, config.noise, n)
    book.mark("moved", old_address)
    book.mark("surname_change", maiden)
    new_mobile = rows.get("new_mobile")
    if new_mobile is not None:
        book.mark("mobile_changed", new_mobile)
        book.eligible["mobile_changed"] += n
    return n, RecordView(entities, rows["entity"], old_address, maiden, new_mobile), book


# --- the four systems --------------------------------------------------------------------------

def render_sales(rows, entities: Entities, pools: Pools, config: GeneratorConfig, rng,
                 old_address, maiden, export_date: date) -> Rendered:
    """CRM leads: Latin script, nicknames, free-format phones, DD.MM.YYYY birth dates."""
    n, view, book = start_records(rows, entities, config, rng, old_address, maiden)
    given, family, person = latin_person_names(view, pools, book, rng, nickname_ok=True)
    apply_other_names(view, book, config, given, family, person)
    suffix = view["name_suffix"]
    family = where(person & (suffix != None) & (rng.random(n) < 0.5), join(family, suffix, sep=" "), family)  # noqa: E711
    company, org = org_names(view, book, rng, hanzi_share=0.3)
    street = street_lines(view)
    chosen_typo = np.flatnonzero(book.choose("typo", person | org))
    _typo_into(rng, chosen_typo, person, [given, family, street], [company])
    swap = book.choose("swapped_name_order", person)
    given, family = where(swap, family, given), where(swap, given, family)
    dob = birth_dates(view, book, carried=person & (rng.random(n) < 0.6))  # the CRM asks only sometimes
    email = view["email"].copy()
    mobile = phones_written(view, "mobile", rng.integers(0, 5, n))
    phone = phones_written(view, "landline", rng.integers(0, 5, n))
    wrong = book.choose("wrong_column", (email != None) & ((mobile != None) | (phone != None)))  # noqa: E711
    to_email = wrong & (rng.random(n) < 0.7)
    email[to_email] = where(mobile != None, mobile, phone)[to_email]  # noqa: E711
    mobile[wrong & ~to_email] = email[wrong & ~to_email]
    fields = {"email": email, "mobile": mobile, "birth_date": dob, "street_address": street}
    blank_one(book, rng, fields)
    country_word = country_words(view["country"], rng)
    postcode = zip_codes(view, rng, zip4_share=0.3)
    light_share = config.population.light_lead_share
    if light_share > 0:  # web-form leads: name, e-mail and city only (drawn only when asked)
        light = rng.random(n) < light_share
        for column in (fields["mobile"], phone, fields["street_address"], postcode, country_word):
            column[light] = None
        fields["birth_date"][light] = np.datetime64("NaT")
    consent = view["marketing_consent"]
    opt_in = where(consent == False, "N", where(consent == True, "Y", None))  # noqa: E712
    created = rows["time"]
    last_second = np.datetime64(export_date, "s") - np.timedelta64(1, "s")
    modified = np.minimum(created + rng.integers(0, 30 * 86400, n).astype("timedelta64[s]"),
                          last_second)
    # a partner channel's import writes ISO dates into the CRM: rows the sales suite quarantines
    birth_date_text = dates_as(fields["birth_date"], written_date_style(config, "dmy"))
    notes = US_SALES_NOTES if config.population.western_country == "US" else SALES_NOTES
    as_person, company_first, company_rest = company_as_person(book, config, org, company)
    whole = full_name_in_family(book, config, person & (view["name_origin"] == "cn"))
    family = where(whole, join(family, given, sep=" "), family)
    given = where(whole, None, given)
    malformed = book.choose("malformed_date", fields["birth_date"] != None)  # noqa: E711
    birth_date_text[malformed] = dates_as(fields["birth_date"][malformed], "iso")
    table = pa.table({
        "lead_id": as_strings(keys("L", n, rng, 8)),
        "created_at": as_strings(timestamps(created)),
        "channel": as_strings(rows["channel"]),
        "lead_type": as_strings(np.where(person | as_person, "person", "company").astype(object)),
        "first_name": as_strings(where(person, given, where(as_person, company_first, None))),
        "last_name": as_strings(where(person, family, where(as_person, company_rest, None))),
        "company_name": as_strings(where(as_person, None, company)),
        "email": as_strings(fields["email"]),
        "mobile": as_strings(fields["mobile"]),
        "phone": as_strings(phone),
        "street_address": as_strings(fields["street_address"]),
        "zip": as_strings(postcode),
        "city": as_strings(view["city"]),
        **state_column("state", view, config),
        "country": as_strings(country_word),
        "birth_date": as_strings(birth_date_text),
        "product_interest": as_strings(rows["product"]),
        "marketing_opt_in": as_strings(opt_in),
        "notes": as_strings(notes[rng.integers(0, len(notes), n)]),
        "last_modified": as_strings(timestamps(np.maximum(modified, created))),
    })
    return Rendered(table, as_objects(table["lead_id"].combine_chunks()), rows["entity"], book)


def company_as_person(book: NoiseBook, config: GeneratorConfig, org: np.ndarray,
                      company: np.ndarray, rate: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Companies keyed into a person-only screen: the whole name in the family-name field, or
    (a third of them) the first word as if it were a given name ("Hövel" / "Druckerei GmbH")."""
    as_person = book.choose_kind("party_type_wrong", org,
                                 config.kinds.party_type_wrong if rate is None else rate)
    split = as_person & (book.kind_rng.random(len(org)) < 1 / 3)
    parts = [(c or "").split(" ", 1) for c in company]
    first = np.array([p[0] if len(p) == 2 else None for p in parts], dtype=object)
    rest = np.array([p[1] if len(p) == 2 else None for p in parts], dtype=object)
    split &= first != None  # noqa: E711
    return as_person, where(split, first, None), where(split, rest, company)


def full_name_in_family(book: NoiseBook, config: GeneratorConfig, cn_person: np.ndarray) -> np.ndarray:
    """Chinese persons whose whole name went into the family-name field, the given name left empty."""
    return book.choose_kind("full_name_in_family_field", cn_person, config.kinds.full_name_in_family_field)


def _typo_into(rng, chosen: np.ndarray, person: np.ndarray, person_columns: list[np.ndarray],
               org_columns: list[np.ndarray]) -> None:
    """Apply one typo per chosen record to one of its name/address columns (in place)."""
    which = rng.integers(0, 100, len(chosen))
    for columns, mask in [(person_columns, person[chosen]), (org_columns, ~person[chosen])]:
        rows = chosen[mask]
        pick = which[mask] % len(columns)
        for k, column in enumerate(columns):
            target = rows[pick == k]
            target = target[np.array([column[i] is not None for i in target], dtype=bool)]
            column[target] = typos(list(column[target]), rng)


def render_underwriting(rows, entities: Entities, policies: Policies, pools: Pools,
                        config: GeneratorConfig, rng, old_address, maiden) -> Rendered:
    """Applications: typed Parquet, hanzi or pinyin names, national IDs, ISO country codes."""
    n, view, book = start_records(rows, entities, config, rng, old_address, maiden)
    given, family, person = latin_person_names(view, pools, book, rng, nickname_ok=False)
    cn_person = person & (view["name_origin"] == "cn")
    hanzi = cn_person & (rng.random(n) < 0.5)
    given = where(hanzi, view["given_name"], given)
    family = where(hanzi, view["family_name"], family)
    company, org = org_names(view, book, rng, hanzi_share=0.6)
    cn = view["country"] == "CN"
    addr = where(cn, join(view["district_native"], view["street_native"], view["house_number"], "号"),
                 street_lines(view))
    chosen_typo = np.flatnonzero(book.choose("typo", (person & ~hanzi) | (org & ~cn)))
    _typo_into(rng, chosen_typo, person, [given, family], [company])
    swap = book.choose("swapped_name_order", person)
    given, family = where(swap, family, given), where(swap, given, family)
    whole = full_name_in_family(book, config, cn_person)
    whole_name = where(hanzi, join(family, given), join(family, given, sep=" "))
    dob = birth_dates(view, book)
    national_id = where(person & (cn | (rng.random(n) < 0.7)), view["national_id"], None)
    reg_no = where(view["_registration_hidden"], None, view["registration_id"])
    ids = where(person, national_id, reg_no)
    corrupt_ids(book, rng, ids, person | (org & cn), view)
    national_id, reg_no = where(person, ids, None), where(org, ids, None)
    mobile = phones_written(view, "mobile", rng.integers(0, 5, n))
    landline = phones_written(view, "landline", rng.integers(0, 5, n))
    phone = where(mobile != None, mobile, landline)  # noqa: E711
    email = view["email"].copy()
    wrong = book.choose("wrong_column", (email != None) & (phone != None))  # noqa: E711
    email[wrong] = phone[wrong]
    fields = {"dob": dob, "national_id": national_id, "phone": phone, "email": email}
    blank_one(book, rng, fields)
    fields["national_id"] = ids_written(view, fields["national_id"], rng)
    policy = rows["policy"]
    has_policy = policy >= 0
    pol = np.maximum(policy, 0)
    is_cny = cn
    factor = np.where(is_cny, 7.8, 1.0)
    premium = np.where(has_policy, policies.premium[pol], np.round(rng.lognormal(6.5, 0.8, n) * factor, 2))
    sum_insured = np.where(has_policy, policies.sum_insured[pol], np.round(premium * 40, -2))
    submitted = rows["time"]
    years = submitted.astype("datetime64[Y]").astype(int) + 1970
    serial = rng.permutation(n) + 1
    app_no = np.array([f"UW-{y}-{s:06d}" for y, s in zip(years.tolist(), serial.tolist(), strict=True)],
                      dtype=object)
    updated = submitted + rng.integers(0, 10 * 86400, n).astype("timedelta64[s]")
    table = pa.table({
        "application_no": as_strings(app_no),
        "applicant_type": as_strings(np.where(person, "P", "O").astype(object)),
        "surname": as_strings(where(person, where(whole, whole_name, family), None)),
        **birth_name_column(view, config),
        "given_names": as_strings(where(person & ~whole, given, None)),
        "name_native": as_strings(where(cn_person, view["name_native"], None)),
        "sex": as_strings(where(person, view["sex"], None)),
        "dob": pa.array(fields["dob"], type=pa.date32()),
        "national_id": as_strings(fields["national_id"]),
        "company_name": as_strings(company),
        "company_reg_no": as_strings(reg_no),
        "phone": as_strings(fields["phone"]),
        "email": as_strings(fields["email"]),
        "addr_line1": as_strings(addr),
        "postal_code": as_strings(zip_codes(view, rng, zip4_share=0.6)),
        "town": as_strings(where(cn, view["city_native"], view["city"])),
        **state_column("state", view, config),
        "country_code": as_strings(view["country"]),
        "product_code": as_strings(rows["product"]),
        "sum_insured": pa.array(sum_insured, pa.float64()),
        "annual_premium": pa.array(premium, pa.float64()),
        "currency": as_strings(currencies(view["country"])),
        "decision": as_strings(rows["decision"]),
        "policy_no": as_strings(where(has_policy, policies.number[pol], None)),
        "submitted_at": pa.array(submitted.astype("datetime64[us]"), pa.timestamp("us")),
        "updated_at": pa.array(updated.astype("datetime64[us]"), pa.timestamp("us")),
    })
    return Rendered(table, app_no, rows["entity"], book)


def render_servicing(rows, entities: Entities, policies: Policies, pools: Pools,
                     config: GeneratorConfig, rng, old_address, maiden) -> Rendered:
    """Policy parties: one name field in varying order, phone lists, nested address (JSON Lines)."""
    n, view, book = start_records(rows, entities, config, rng, old_address, maiden)
    given, family, person = latin_person_names(view, pools, book, rng, nickname_ok=True)
    company, org = org_names(view, book, rng, hanzi_share=0.4)
    cn_person = person & (view["name_origin"] == "cn")
    style = rng.random(n)
    hanzi = cn_person & (style < 0.4)
    apply_other_names(view, book, config, given, family, person & ~hanzi)
    street = street_lines(view)
    chosen_typo = np.flatnonzero(book.choose("typo", (person & ~hanzi) | org))
    _typo_into(rng, chosen_typo, person, [given, family, street], [company])
    suffix = view["name_suffix"]
    family_s = where(suffix != None, join(family, suffix, sep=" "), family)  # noqa: E711
    swap = book.choose("swapped_name_order", person & ~hanzi)
    de_name = where(style < 0.6, join(family_s, given, sep=", "), join(given, family_s, sep=" "))
    cn_name = where(style < 0.8, join(pc.utf8_upper(as_strings(family)), given, sep=" "),
                    join(given, family, sep=" "))
    name = where(cn_person, where(hanzi, view["name_native"], cn_name), de_name)
    # swapped order: the parts come in the other order than the system's convention says
    swapped = where(cn_person, join(given, pc.utf8_upper(as_strings(family)), sep=" "),
                    where(style < 0.6, join(given, family_s, sep=", "), join(family_s, given, sep=" ")))
    name = where(swap, swapped, name)
    name = where(org, company, name)
    as_person = book.choose_kind("party_type_wrong", org, config.kinds.party_type_wrong)
    dob = birth_dates(view, book)
    cn = view["country"] == "CN"
    ids = where(person & (rng.random(n) < np.where(cn, 0.9, 0.5)), view["national_id"], None)
    ids = where(org, where(view["_registration_hidden"], None, view["registration_id"]), ids)
    corrupt_ids(book, rng, ids, person | (org & cn), view)
    mobile = phones_written(view, "mobile", np.where(rng.random(n) < 0.6, 0, rng.integers(0, 5, n)))
    landline = phones_written(view, "landline", np.where(rng.random(n) < 0.6, 0, rng.integers(0, 5, n)))
    email = view["email"].copy()
    wrong = book.choose("wrong_column", (email != None) & ((mobile != None) | (landline != None)))  # noqa: E711
    email[wrong] = where(mobile != None, mobile, landline)[wrong]  # noqa: E711
    fields = {"birth_date": dob, "id_number": ids, "email_address": email, "mobile": mobile}
    blank_one(book, rng, fields)
    fields["id_number"] = ids_written(view, fields["id_number"], rng)
    mobile = fields["mobile"]
    phone_list = [[p for p in pair if p is not None] for pair in zip(mobile, landline, strict=True)]
    address_street = where(cn & (rng.random(n) < 0.5), join(view["street_native"], view["house_number"], "号"),
                           street)
    city = where(cn & (address_street != street), view["city_native"], view["city"])
    policy = rows["policy"]
    gender = np.where(view["sex"] == "M", "male", np.where(view["sex"] == "F", "female", "unknown"))
    consent = view["marketing_consent"]
    table = pa.table({
        "record_id": as_strings(keys("SV-", n, rng, 8)),
        "policy_number": as_strings(policies.number[policy]),
        "role": as_strings(rows["role"]),
        "party_kind": as_strings(np.where(person | as_person, "natural", "legal").astype(object)),
        "name": as_strings(name),
        "birth_date": as_strings(dates_as(fields["birth_date"], written_date_style(config, "iso"))),
        "gender": as_strings(gender.astype(object)),
        "id_number": as_strings(fields["id_number"]),
        "phone_numbers": pa.array(phone_list, type=pa.list_(pa.string())),
        "email_address": as_strings(fields["email_address"]),
        "address": pa.StructArray.from_arrays(
            [as_strings(address_street), as_strings(zip_codes(view, rng, zip4_share=0.5)), as_strings(city),
             *state_column("state", view, config).values(), as_strings(view["country"])],
            names=["street", "postcode", "city", *state_column("state", view, config), "country"]),
        "product": as_strings(policies.product[policy]),
        "premium": pa.array(policies.premium[policy], pa.float64()),
        "currency": as_strings(policies.currency[policy]),
        "status": as_strings(policies.status[policy]),
        "start_date": as_strings(iso_dates(policies.start[policy])),
        "end_date": as_strings(iso_dates(policies.end[policy])),
        "consent_marketing": pa.array(consent, type=pa.bool_(), from_pandas=True),
        "last_updated": as_strings(timestamps(rows["time"], sep="T")),
    })
    return Rendered(table, as_objects(table["record_id"].combine_chunks()), rows["entity"], book)


def render_claims(rows, entities: Entities, policies: Policies, pools: Pools,
                  config: GeneratorConfig, rng, old_address, maiden) -> Rendered:
    """Claims: one-line names (hanzi for most Chinese claimants), YYYYMMDD, decimal comma."""
    n, view, book = start_records(rows, entities, config, rng, old_address, maiden)
    given, family, person = latin_person_names(view, pools, book, rng, nickname_ok=True)
    cn_person = person & (view["name_origin"] == "cn")
    hanzi = cn_person & (rng.random(n) < 0.7)
    apply_other_names(view, book, config, given, family, person & ~hanzi)
    legacy = ~cn_person & (rng.random(n) < 0.4)  # an old system that folds umlauts: Mueller
    cn = view["country"] == "CN"
    de_street = street_lines(view)
    abbreviated = pc.replace_substring(as_strings(de_street), "straße", "str.")
    de_street = where(rng.random(n) < 0.4, as_objects(abbreviated), de_street)
    chosen_typo = np.flatnonzero(book.choose("typo", person & ~hanzi))
    _typo_into(rng, chosen_typo, person, [given, family, de_street], [])
    given = where(legacy, as_objects(pc.utf8_title(ascii_fold(as_strings(given)))), given)
    family = where(legacy, as_objects(pc.utf8_title(ascii_fold(as_strings(family)))), family)
    swap = book.choose("swapped_name_order", person & ~hanzi)
    latin = where(cn_person, join(family, given, sep=" "), join(given, family, sep=" "))
    latin = where(swap, where(cn_person, join(given, family, sep=" "), join(family, given, sep=" ")), latin)
    name = where(hanzi, view["name_native"], latin)
    dob = birth_dates(view, book)
    ids = where(person & (rng.random(n) < np.where(cn, 0.8, 0.3)), view["national_id"], None)
    corrupt_ids(book, rng, ids, person, view)
    mobile = phones_written(view, "mobile", np.where(cn, 3, rng.integers(0, 5, n)))
    landline = phones_written(view, "landline", rng.integers(0, 5, n))
    phone = where(mobile != None, mobile, landline)  # noqa: E711
    email = view["email"].copy()
    wrong = book.choose("wrong_column", (email != None) & (phone != None))  # noqa: E711
    email[wrong] = phone[wrong]
    fields = {"claimant_birthdate": dob, "claimant_id_no": ids, "contact_phone": phone,
              "contact_email": email}
    blank_one(book, rng, fields)
    fields["claimant_id_no"] = ids_written(view, fields["claimant_id_no"], rng)
    cn_address = join(view["city_native"], "市", view["district_native"], view["street_native"],
                      view["house_number"], "号, ", view["postcode"])
    de_address = join(de_street, ", ", view["postcode"], " ", view["city"], ", ", view["country"])
    us = view["country"] == "US"
    if us.any():  # US style: '1234 Maple Ave, Springfield, IL 62704-1234'
        us_address = join(de_street, ", ", view["city"], ", ", view["state"], " ",
                          zip_codes(view, rng, zip4_share=0.3))
        de_address = where(us, us_address, de_address)
    address = where(cn, where(rng.random(n) < 0.8, cn_address,
                              join(view["street"], " ", view["house_number"], ", ", view["district"],
                                   ", ", view["city"], " ", view["postcode"])), de_address)
    # the German/Chinese claims system writes decimal commas; a US one writes 1234.50
    amount_text = decimal_point if config.population.western_country == "US" else decimal_comma
    policy = rows["policy"]
    amount = np.round(policies.premium[policy] * rng.lognormal(0.5, 0.9, n), 2)
    status = np.array(["open", "paid", "rejected", "closed"], dtype=object)[rng.choice(4, n, p=[0.25, 0.45, 0.1, 0.2])]
    paid = np.where(status == "paid", amount, np.where(status == "closed", np.round(amount * rng.uniform(0.5, 1, n), 2),
                    np.where(status == "open", np.round(amount * rng.uniform(0, 0.5, n), 2), 0.0)))
    table = pa.table({
        "claim_no": as_strings(keys("CLM-", n, rng, 7)),
        "policy_no": as_strings(policies.number[policy]),
        "claimant_name": as_strings(name),
        "claimant_birthdate": as_strings(dates_as(fields["claimant_birthdate"],
                                                   written_date_style(config, "compact"))),
        "claimant_id_no": as_strings(fields["claimant_id_no"]),
        "contact_phone": as_strings(fields["contact_phone"]),
        "contact_email": as_strings(fields["contact_email"]),
        "address": as_strings(address),
        "loss_date": as_strings(iso_dates(rows["loss_date"])),
        "reported_date": as_strings(iso_dates(rows["reported_date"])),
        "claim_amount": as_strings(amount_text(amount)),
        "paid_amount": as_strings(amount_text(paid)),
        "claim_status": as_strings(status),
        "updated": as_strings(timestamps(rows["time"])),
    })
    return Rendered(table, as_objects(table["claim_no"].combine_chunks()), rows["entity"], book)
