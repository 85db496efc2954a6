"""The true customers (entities) behind the exports, hard-negative groups included.

One row per entity: persons in German/English and Chinese locales and organizations, each with the
attributes the source systems later write down (imperfectly). Hard negatives are built in blocks at
the start of each locale segment: a block's first entity is the one the others copy from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.identifiers import (
    cn_credit_codes,
    cn_resident_ids,
    de_tax_ids,
    e164,
    int_strings,
    landline_numbers,
    mobile_numbers,
    unique_ints,
    us_eins,
    us_ssns,
)
from pipelines.generate.pools import (
    CN_CITIES,
    CN_INDUSTRIES,
    COMMON_NAMES_CN,
    COMMON_NAMES_DE,
    COMMON_NAMES_US,
    DE_BRANDS,
    DE_CITIES,
    DE_INDUSTRIES,
    EN_INDUSTRIES,
    LEGAL_FORMS,
    US_CITIES,
    US_INDUSTRIES,
    Pools,
)

DE, CN = 0, 1
EMAIL_DOMAINS_DE = np.array(["gmx.de", "web.de", "t-online.de", "gmail.com", "outlook.de", "posteo.de"],
                            dtype=object)
EMAIL_DOMAINS_CN = np.array(["163.com", "126.com", "sina.com", "gmail.com", "outlook.com"], dtype=object)
EMAIL_DOMAINS_US = np.array(["gmail.com", "yahoo.com", "outlook.com", "aol.com", "comcast.net", "icloud.com"],
                            dtype=object)
CALLING_CODES = {"DE": "49", "CN": "86", "US": "1"}
UMLAUTS = [("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("é", "e"), ("è", "e"), ("'", ""),
           (" ", "")]


@dataclass
class Entities:
    """Column arrays of the true entities (numpy object arrays; None = attribute does not exist)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["entity_id"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def arrow_column(values: np.ndarray) -> pa.Array:
    """numpy column -> Arrow: strings/booleans with None as null, dates as date32."""
    if values.dtype == object:
        first = next((v for v in values if v is not None), None)
        kind = pa.bool_() if isinstance(first, bool) else pa.string()
        return pa.array(values, type=kind, from_pandas=True)
    if values.dtype.kind == "M":
        return pa.array(values.astype("datetime64[D]"), type=pa.date32())
    return pa.array(values)


def ascii_fold(values: pa.Array) -> pa.Array:
    """Lower-case ASCII as e-mail addresses and legacy systems write German names (ü -> ue)."""
    out = pc.utf8_lower(values)
    for char, replacement in UMLAUTS:
        out = pc.replace_substring(out, char, replacement)
    return out


def _blocks(rng: np.random.Generator, total: int, low: int, high: int) -> np.ndarray:
    """Block sizes in [low, high] that together fill at most `total` entities."""
    sizes = rng.integers(low, high + 1, total // low + 1)
    return sizes[np.cumsum(sizes) <= total]


def _block_heads(start: int, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For blocks laid out from `start`: member indices, their block head, their rank in block."""
    n = int(sizes.sum())
    members = np.arange(start, start + n)
    block_start = np.repeat(start + np.r_[0, np.cumsum(sizes)[:-1]], sizes)
    return members, block_start, members - block_start


def build_entities(n: int, rng: np.random.Generator, pools: Pools, config: GeneratorConfig,
                   export_date: date) -> Entities:
    """All true entities with their attributes and hard-negative groups."""
    west = config.population.western_country
    n_org = int(round(n * config.mix.organization))
    n_cn = int(round(n * config.mix.person_cn))
    n_de = n - n_org - n_cn
    party = np.array(["person"] * (n_de + n_cn) + ["organization"] * n_org, dtype=object)
    locale = np.r_[np.full(n_de, DE), np.full(n_cn, CN),
                   (rng.random(n_org) < n_cn / max(n_cn + n_de, 1)).astype(int)]
    person = party == "person"
    cols: dict[str, np.ndarray] = {
        "entity_id": np.array(int_strings(np.arange(1, n + 1), 8).to_numpy(zero_copy_only=False),
                              dtype=object),
        "party_type": party,
        "locale": np.where(locale == CN, "cn", west.lower()).astype(object),
        "country": np.where(locale == CN, "CN", west).astype(object),
    }
    cols["entity_id"] = np.array(["E" + e for e in cols["entity_id"]], dtype=object)
    cols["hard_case"] = np.full(n, None, dtype=object)
    cols["hard_case_group"] = np.full(n, None, dtype=object)
    is_cn = locale == CN

    # --- where everyone lives: city first (common-name groups share one), address later --------
    n_cities = np.where(is_cn, len(CN_CITIES), len(US_CITIES) if west == "US" else len(DE_CITIES))
    city_idx = (rng.random(n) * n_cities).astype(int)

    hard = config.hard_negatives
    groups = _plan_hard_negatives(rng, n_de, n_cn, n_org, hard)
    for kind, members, _, _ in groups:
        cols["hard_case"][members] = kind
    next_group = _assign_group_ids(cols, groups)
    common = [g for g in groups if g[0] == "common_name"]
    for _, members, heads, _ in common:
        city_idx[members] = city_idx[heads]

    _person_names(cols, rng, pools, config, n, person, is_cn)
    _birth_dates(cols, rng, n, person, export_date)
    _addresses(cols, rng, pools, n, is_cn, city_idx)
    if west == "US":
        _us_addresses(cols, rng, pools, ~is_cn, city_idx)
    _phones(cols, rng, n, is_cn, person, config.population)
    _organizations(cols, rng, pools, n, ~person, is_cn, city_idx)
    if west == "US":
        _us_organizations(cols, rng, pools, ~person & ~is_cn)

    for kind, members, heads, ranks in groups:
        if kind == "company_owner":
            _company_owners(cols, members, is_cn, next_group)
        else:
            _apply_hard_negative(cols, rng, pools, kind, members, heads, ranks, is_cn, export_date)

    cols["_partner"] = _household_partners(n, groups)
    if west == "US":  # Jr. beyond the father/son pairs: a common part of American names
        ordinary_men = person & ~is_cn & (cols["sex"] == "M") & (cols["hard_case"] == None)  # noqa: E711
        cols["name_suffix"][ordinary_men & (rng.random(n) < 0.03)] = "Jr."
    latin_names(cols, pools)
    _emails(cols, rng, n, is_cn, person, groups, west)
    _national_ids(cols, rng, n, is_cn, person, city_idx, west)
    share = config.population.national_id_share
    if share < 1:  # drawn only when asked, so the default population stays byte-identical
        cols["national_id"][rng.random(n) >= share] = None
        cols["national_id_type"][cols["national_id"] == None] = None  # noqa: E711
    cols["marketing_consent"] = np.array(
        [True, False, None], dtype=object)[rng.choice(3, n, p=[0.4, 0.4, 0.2])]
    cols["e164_mobile"] = e164_column(cols, "mobile")
    cols["e164_landline"] = e164_column(cols, "landline")
    return Entities(cols)


def _household_partners(n: int, groups) -> np.ndarray:
    """Another member of the same household per entity (-1 outside households)."""
    partner = np.full(n, -1)
    for kind, members, heads, ranks in groups:
        if kind == "household":
            partner[members[ranks > 0]] = heads[ranks > 0]
            partner[members[ranks == 1] - 1] = members[ranks == 1]
    return partner


def calling_codes(country: np.ndarray) -> np.ndarray:
    """Country calling code (without +) per ISO country code."""
    out = np.full(len(country), CALLING_CODES["DE"], dtype=object)
    for code, cc in CALLING_CODES.items():
        out[country == code] = cc
    return out


def e164_column(cols: dict[str, np.ndarray], kind: str) -> np.ndarray:
    cc = calling_codes(cols["country"])
    arr = e164(pa.array(cc, pa.string()), pa.array(cols[f"{kind}_ndc"], pa.string()),
               pa.array(cols[f"{kind}_sub"], pa.string()))
    return np.array(arr.to_numpy(zero_copy_only=False), dtype=object)


def _plan_hard_negatives(rng, n_de, n_cn, n_org, hard):
    """Lay out hard-negative blocks at the start of each locale segment.

    Returns (kind, member indices, head index per member, rank within block) per kind and locale.
    """
    groups = []
    for seg_start, seg_n, locale in [(0, n_de, DE), (n_de, n_cn, CN)]:
        cursor = seg_start
        plan = [("household", hard.household, 2, 4), ("twin", hard.twin, 2, 2),
                ("father_son", hard.father_son if locale == DE else 0.0, 2, 2),
                ("common_name", hard.common_name, 3, 6)]
        for kind, rate, low, high in plan:
            total = int(round(rate * seg_n))
            if total < low:
                continue
            sizes = _blocks(rng, total, low, high)
            if len(sizes) == 0:
                continue
            members, heads, ranks = _block_heads(cursor, sizes)
            groups.append((kind, members, heads, ranks))
            cursor += int(sizes.sum())
        # company owners come from the tail of the segment (ordinary persons)
    org_start = n_de + n_cn
    n_owned = int(round(hard.company_owner * n_org))
    if n_owned:
        orgs = np.arange(org_start, org_start + n_owned)
        groups.append(("company_owner", orgs, orgs, np.zeros(n_owned, dtype=int)))
    return groups


def _assign_group_ids(cols, groups) -> int:
    """Group ids HN0000001... per block; returns the next free number (for company owners)."""
    counter = 0
    for kind, members, heads, _ in groups:
        if kind == "company_owner":
            continue
        _, block = np.unique(heads, return_inverse=True)
        cols["hard_case_group"][members] = [f"HN{counter + b + 1:07d}" for b in block]
        counter += int(block.max()) + 1 if len(block) else 0
    return counter


def _person_names(cols, rng, pools: Pools, config, n, person, is_cn) -> None:
    male = rng.random(n) < 0.5
    english = (~is_cn) & (rng.random(n) < config.portfolio.english_name_share)
    given = np.full(n, None, dtype=object)
    family = np.full(n, None, dtype=object)
    for mask, pool_m, pool_f, fam in [
        (person & ~is_cn & ~english, pools.de_given_m, pools.de_given_f, pools.de_family),
        (person & english, pools.en_given_m, pools.en_given_f, pools.en_family),
    ]:
        k = int(mask.sum())
        gm = pool_m[rng.integers(0, len(pool_m), k)]
        gf = pool_f[rng.integers(0, len(pool_f), k)]
        given[mask] = np.where(male[mask], gm, gf)
        family[mask] = fam[rng.integers(0, len(fam), k)]
    cn = person & is_cn
    k = int(cn.sum())
    gm = pools.cn_given_m[rng.integers(0, len(pools.cn_given_m), k)]
    gf = pools.cn_given_f[rng.integers(0, len(pools.cn_given_f), k)]
    given[cn] = np.where(male[cn], gm, gf)
    family[cn] = pools.cn_family[rng.choice(len(pools.cn_family), k, p=pools.cn_family_p)]
    cols["name_origin"] = np.where(is_cn, "cn", np.where(english, "en", "de")).astype(object)
    cols["name_origin"][~person] = None
    cols["given_name"], cols["family_name"] = given, family
    cols["sex"] = np.where(male, "M", "F").astype(object)
    cols["sex"][~person] = None
    cols["name_suffix"] = np.full(n, None, dtype=object)


def latin_names(cols, pools: Pools) -> None:
    """Latin forms of names: pinyin for hanzi, the name itself otherwise; hanzi full name."""
    cn = (cols["name_origin"] == "cn")
    for part in ["given_name", "family_name"]:
        latin = cols[part].copy()
        latin[cn] = [pools.pinyin.get(v) or _pinyin_fallback(v) for v in cols[part][cn]]
        cols[f"{part}_latin"] = latin
    native = np.full(len(cn), None, dtype=object)
    native[cn] = cols["family_name"][cn] + cols["given_name"][cn]
    cols["name_native"] = native


def _pinyin_fallback(text: str) -> str:
    from pipelines.generate.pools import to_pinyin

    return to_pinyin(text)


def _birth_dates(cols, rng, n, person, export_date: date) -> None:
    today = np.datetime64(export_date, "D")
    age_days = (rng.uniform(18, 85, n) * 365.25).astype(int)
    birth = today - age_days.astype("timedelta64[D]")
    cols["birth_date"] = np.where(person, birth, np.datetime64("NaT")).astype("datetime64[D]")


def _addresses(cols, rng, pools: Pools, n, is_cn, city_idx) -> None:
    de_city = np.array([c[0] for c in DE_CITIES], dtype=object)
    de_zip2 = np.array([c[1] for c in DE_CITIES], dtype=object)
    cn_city = np.array([c[0] for c in CN_CITIES], dtype=object)
    cn_city_py = np.array([c[1] for c in CN_CITIES], dtype=object)
    cn_zip3 = np.array([c[2] for c in CN_CITIES], dtype=object)
    de_street = pools.de_streets[rng.integers(0, len(pools.de_streets), n)]
    cn_street_i = rng.integers(0, len(pools.cn_streets), n)
    number = rng.integers(1, 160, n)
    letter = np.where(rng.random(n) < 0.05, np.array(list("abc"), dtype=object)[rng.integers(0, 3, n)], "")
    cols["house_number"] = np.array([f"{a}{b}" for a, b in zip(number.tolist(), letter.tolist(),
                                                                   strict=True)], dtype=object)
    cols["house_number"][is_cn] = number[is_cn].astype(str).astype(object)
    de_i = np.minimum(city_idx, len(DE_CITIES) - 1)
    cn_i = np.minimum(city_idx, len(CN_CITIES) - 1)
    cols["street"] = np.where(is_cn, pools.cn_streets_pinyin[cn_street_i], de_street)
    cols["street_native"] = np.where(is_cn, pools.cn_streets[cn_street_i], None)
    zip_tail = rng.integers(0, 1000, n)
    cols["postcode"] = np.where(
        is_cn, cn_zip3[cn_i] + np.char.zfill(zip_tail.astype(str), 3).astype(object),
        de_zip2[de_i] + np.char.zfill(zip_tail.astype(str), 3).astype(object))
    cols["city"] = np.where(is_cn, cn_city_py[cn_i], de_city[de_i])
    cols["city_native"] = np.where(is_cn, cn_city[cn_i], None)
    district_pick = rng.random(n)
    district = np.full(n, None, dtype=object)
    district_native = np.full(n, None, dtype=object)
    for ci, (_, _, _, _, districts, _) in enumerate(CN_CITIES):
        mask = is_cn & (cn_i == ci)
        pick = (district_pick[mask] * len(districts)).astype(int)
        district_native[mask] = np.array([d[0] for d in districts], dtype=object)[pick]
        district[mask] = np.array([d[1] for d in districts], dtype=object)[pick]
    cols["district"], cols["district_native"] = district, district_native
    cols["state"] = np.full(n, None, dtype=object)
    cols["_zip4"] = np.full(n, None, dtype=object)
    cols["_city_idx"] = city_idx


def _us_addresses(cols, rng, pools: Pools, us: np.ndarray, city_idx: np.ndarray) -> None:
    """US addresses: '1234 Maple Ave', city, two-letter state, ZIP (+4 digits some systems add)."""
    k = int(us.sum())
    i = np.minimum(city_idx[us], len(US_CITIES) - 1)
    cols["street"][us] = pools.us_streets[rng.integers(0, len(pools.us_streets), k)]
    cols["house_number"][us] = rng.integers(1, 9900, k).astype(str).astype(object)
    cols["city"][us] = np.array([c[0] for c in US_CITIES], dtype=object)[i]
    cols["state"][us] = np.array([c[1] for c in US_CITIES], dtype=object)[i]
    tail = np.char.zfill(rng.integers(0, 100, k).astype(str), 2).astype(object)
    cols["postcode"][us] = np.array([c[2] for c in US_CITIES], dtype=object)[i] + tail
    zip4 = np.full(len(us), None, dtype=object)
    zip4[us] = np.char.zfill(rng.integers(1, 10000, k).astype(str), 4).astype(object)
    cols["_zip4"][us] = zip4[us]


def _phones(cols, rng, n, is_cn, person, population) -> None:
    ndc, sub = mobile_numbers(rng, is_cn)
    has_mobile = person & (rng.random(n) < population.mobile_share)
    cols["mobile_ndc"] = np.where(has_mobile, ndc.to_numpy(zero_copy_only=False), None)
    cols["mobile_sub"] = np.where(has_mobile, sub.to_numpy(zero_copy_only=False), None)
    city_idx = cols["_city_idx"]
    de_area = np.array([c[2] for c in DE_CITIES], dtype=object)
    de_width = np.array([c[3] for c in DE_CITIES])
    cn_area = np.array([c[3] for c in CN_CITIES], dtype=object)
    de_i = np.minimum(city_idx, len(DE_CITIES) - 1)
    cn_i = np.minimum(city_idx, len(CN_CITIES) - 1)
    area = np.where(is_cn, cn_area[cn_i], de_area[de_i])
    width = np.where(is_cn, 8, de_width[de_i])
    subs = np.array(landline_numbers(rng, area, width).to_numpy(zero_copy_only=False), dtype=object)
    has_landline = ~person | (rng.random(n) < population.landline_share)
    if population.landline_if_no_mobile:
        has_landline |= ~has_mobile
    if population.western_country == "US":
        _us_phones(cols, rng, ~is_cn, area, subs)
    cols["landline_ndc"] = np.where(has_landline, area, None)
    cols["landline_sub"] = np.where(has_landline, subs, None)  # type: ignore[call-overload]
    cols["_landline_area"], cols["_landline_sub_all"] = area, subs


def _us_phones(cols, rng, us: np.ndarray, area: np.ndarray, subs: np.ndarray) -> None:
    """North American numbers: the city's area code (a third of mobiles from elsewhere), 7 digits.

    Mobiles and landlines are drawn together so no two people share a number by accident.
    """
    k = int(us.sum())
    codes = np.array([c[3] for c in US_CITIES], dtype=object)
    city_code = codes[np.minimum(cols["_city_idx"][us], len(US_CITIES) - 1)]
    mobile_code = np.where(rng.random(k) < 0.33, codes[rng.integers(0, len(codes), k)], city_code)
    numbers = landline_numbers(rng, np.r_[city_code, mobile_code], np.full(2 * k, 7))
    numbers = np.asarray(numbers.to_numpy(zero_copy_only=False), dtype=object)
    area[us] = city_code
    subs[us] = numbers[:k]
    has_mobile = cols["mobile_ndc"][us] != None  # noqa: E711
    mobile_ndc, mobile_sub = cols["mobile_ndc"][us], cols["mobile_sub"][us]
    mobile_ndc[has_mobile], mobile_sub[has_mobile] = mobile_code[has_mobile], numbers[k:][has_mobile]
    cols["mobile_ndc"][us], cols["mobile_sub"][us] = mobile_ndc, mobile_sub


def _organizations(cols, rng, pools: Pools, n, org, is_cn, city_idx) -> None:
    k = np.flatnonzero(org)
    cn = is_cn[k]
    m = len(k)
    form = np.where(cn, "CO_LTD", np.array(["GMBH", "AG", "KG", "LTD"], dtype=object)[
        rng.choice(4, m, p=[0.6, 0.1, 0.1, 0.2])]).astype(object)
    de_base = np.where(rng.random(m) < 0.5,
                       pools.de_family[rng.integers(0, len(pools.de_family), m)],
                       np.array(DE_BRANDS, dtype=object)[rng.integers(0, len(DE_BRANDS), m)])
    de_base = de_base + " " + np.array(DE_INDUSTRIES, dtype=object)[rng.integers(0, len(DE_INDUSTRIES), m)]
    en_base = (pools.en_family[rng.integers(0, len(pools.en_family), m)] + " "
               + np.array(EN_INDUSTRIES, dtype=object)[rng.integers(0, len(EN_INDUSTRIES), m)])
    brand_i = rng.integers(0, pools.cn_common_brands, m)
    industry_i = rng.integers(0, len(CN_INDUSTRIES), m)
    cn_i = np.minimum(city_idx[k], len(CN_CITIES) - 1)
    city_h = np.array([c[0] for c in CN_CITIES], dtype=object)[cn_i]
    city_p = np.array([c[1] for c in CN_CITIES], dtype=object)[cn_i]
    ind_h = np.array([i[0] for i in CN_INDUSTRIES], dtype=object)[industry_i]
    ind_e = np.array([i[1] for i in CN_INDUSTRIES], dtype=object)[industry_i]
    cn_base = city_p + " " + pools.cn_brands_pinyin[brand_i] + " " + ind_e
    cn_native = city_h + pools.cn_brands[brand_i] + ind_h + "有限公司"
    base = np.where(cn, cn_base, np.where(form == "LTD", en_base, de_base))
    # Registers refuse a second company of the same name in one place (HGB §30, China's name
    # registration): a name drawn twice for one city is drawn again. Namesakes on purpose are
    # the hard negatives (related companies, owners' companies), made after this.
    for _ in range(10):
        again = _repeated(base, city_idx[k])
        if not again.any():
            break
        j = np.flatnonzero(again)
        brand_j = rng.integers(0, len(pools.cn_brands), len(j))
        industry_j = rng.integers(0, len(CN_INDUSTRIES), len(j))
        brand_i[j], industry_i[j] = brand_j, industry_j
        ind_h[j] = np.array([i[0] for i in CN_INDUSTRIES], dtype=object)[industry_j]
        ind_e[j] = np.array([i[1] for i in CN_INDUSTRIES], dtype=object)[industry_j]
        cn_base[j] = city_p[j] + " " + pools.cn_brands_pinyin[brand_j] + " " + ind_e[j]
        cn_native[j] = city_h[j] + pools.cn_brands[brand_j] + ind_h[j] + "有限公司"
        de_base[j] = (np.where(rng.random(len(j)) < 0.5,
                               pools.de_family[rng.integers(0, len(pools.de_family), len(j))],
                               np.array(DE_BRANDS, dtype=object)[rng.integers(0, len(DE_BRANDS), len(j))])
                      + " " + np.array(DE_INDUSTRIES, dtype=object)[
                          rng.integers(0, len(DE_INDUSTRIES), len(j))])
        en_base[j] = (pools.en_family[rng.integers(0, len(pools.en_family), len(j))] + " "
                      + np.array(EN_INDUSTRIES, dtype=object)[rng.integers(0, len(EN_INDUSTRIES), len(j))])
        base = np.where(cn, cn_base, np.where(form == "LTD", en_base, de_base))
    for name in ["org_name", "org_name_base", "org_legal_form", "org_name_native", "registration_id"]:
        cols[name] = np.full(n, None, dtype=object)
    cols["org_name_base"][k] = base
    cols["org_legal_form"][k] = form
    cols["org_name_native"][k] = np.where(cn, cn_native, None)
    region = np.array([int(c[5][0]) for c in CN_CITIES])[cn_i]
    uscc = np.array(cn_credit_codes(rng, region).to_numpy(zero_copy_only=False), dtype=object)
    register = unique_ints(rng, 10000, 300000, m)
    hr = np.where(form == "KG", "HRA ", "HRB ").astype(object) + register.astype(str).astype(object)
    cols["registration_id"][k] = np.where(cn, uscc, hr)
    cols["registration_type"] = np.full(n, None, dtype=object)
    cols["registration_type"][k] = np.where(cn, "cn_uscc", "de_handelsregister")
    refresh_org_names(cols, k)


def _repeated(names: np.ndarray, places: np.ndarray) -> np.ndarray:
    """True for every (name, place) after its first occurrence."""
    keys = np.array([f"{p}\x1f{n}" for n, p in zip(names, places, strict=True)], dtype=object)
    _, first = np.unique(keys.astype(str), return_index=True)
    repeated = np.ones(len(keys), dtype=bool)
    repeated[first] = False
    return repeated


def _us_organizations(cols, rng, pools: Pools, us_org: np.ndarray) -> None:
    """US companies: 'Harper Plumbing LLC', Inc./LLC/Corp., an EIN as the registration number."""
    k = np.flatnonzero(us_org)
    m = len(k)
    cols["org_legal_form"][k] = np.array(["INC", "LLC", "CORP"], dtype=object)[rng.choice(3, m, p=[0.4, 0.45, 0.15])]
    cols["org_name_base"][k] = (pools.en_family[rng.integers(0, len(pools.en_family), m)] + " "
                                + np.array(US_INDUSTRIES, dtype=object)[rng.integers(0, len(US_INDUSTRIES), m)])
    cols["registration_id"][k] = np.asarray(us_eins(rng, m).to_numpy(zero_copy_only=False), dtype=object)
    cols["registration_type"][k] = "us_ein"
    refresh_org_names(cols, k)


def refresh_org_names(cols, k) -> None:
    short = {code: forms[0] for code, forms in LEGAL_FORMS.items()}
    cols["org_name"][k] = cols["org_name_base"][k] + " " + np.array(
        [short[f] for f in cols["org_legal_form"][k]], dtype=object)


def _apply_hard_negative(cols, rng, pools: Pools, kind, members, heads, ranks, is_cn,
                         export_date: date) -> None:
    """Make the members of each block share what that kind of hard negative shares."""
    followers = ranks > 0
    m, h = members[followers], heads[followers]
    address = ["street", "street_native", "house_number", "postcode", "city", "city_native",
               "district", "district_native", "state", "_zip4", "_city_idx"]
    if kind in ("household", "twin", "father_son"):
        for c in address:
            cols[c][m] = cols[c][h]
        # households share the landline: make sure the head has one and copy it to everyone
        cols["landline_ndc"][heads] = cols["_landline_area"][heads]
        cols["landline_sub"][heads] = cols["_landline_sub_all"][heads]
        cols["landline_ndc"][m] = cols["landline_ndc"][h]
        cols["landline_sub"][m] = cols["landline_sub"][h]
    if kind == "household":
        spouse = ranks == 1
        cols["sex"][members[spouse]] = np.where(cols["sex"][heads[spouse]] == "M", "F", "M")
        _regive(cols, rng, pools, members[spouse])
        keep_own_name = spouse & is_cn[members]  # Chinese spouses keep their family name
        same = followers & ~keep_own_name
        cols["family_name"][members[same]] = cols["family_name"][heads[same]]
        child = ranks >= 2
        age_gap = (rng.uniform(22, 40, int(child.sum())) * 365.25).astype(int)
        latest = np.datetime64(export_date, "D") - np.timedelta64(365, "D")
        cols["birth_date"][members[child]] = np.minimum(
            cols["birth_date"][heads[child]] + age_gap.astype("timedelta64[D]"), latest)
        near = (rng.normal(0, 4, int(spouse.sum())) * 365.25).astype(int)
        cols["birth_date"][members[spouse]] = cols["birth_date"][heads[spouse]] + near.astype(
            "timedelta64[D]")
    elif kind == "twin":
        cols["family_name"][m] = cols["family_name"][h]
        cols["birth_date"][m] = cols["birth_date"][h]
        flip = rng.random(len(m)) < 0.6
        cols["sex"][m] = np.where(flip, np.where(cols["sex"][h] == "M", "F", "M"), cols["sex"][h])
        _regive(cols, rng, pools, m, differ_from=h)
    elif kind == "father_son":
        cols["sex"][members] = "M"
        _regive(cols, rng, pools, h)  # the father's name is re-drawn as male, the son gets it too
        cols["given_name"][m] = cols["given_name"][h]
        cols["family_name"][m] = cols["family_name"][h]
        gap = (rng.uniform(22, 38, len(m)) * 365.25).astype(int)
        cols["birth_date"][h] = np.minimum(cols["birth_date"][h],
                                           np.datetime64(export_date, "D") - np.timedelta64(60 * 365, "D"))
        cols["birth_date"][m] = cols["birth_date"][h] + gap.astype("timedelta64[D]")
        uses_suffix = rng.random(len(m)) < 0.4
        cols["name_suffix"][h[uses_suffix]] = "Sr."
        cols["name_suffix"][m[uses_suffix]] = "Jr."
    elif kind == "common_name":
        _, block = np.unique(heads, return_inverse=True)
        us = cols["country"][members[0]] == "US"
        names = COMMON_NAMES_CN if is_cn[members[0]] else COMMON_NAMES_US if us else COMMON_NAMES_DE
        pick = rng.integers(0, len(names), block.max() + 1)[block]
        cols["given_name"][members] = np.array([g for g, _, _ in names], dtype=object)[pick]
        cols["family_name"][members] = np.array([f for _, f, _ in names], dtype=object)[pick]
        cols["sex"][members] = np.array([s for _, _, s in names], dtype=object)[pick]
        if not is_cn[members[0]]:
            cols["name_origin"][members] = "en" if us else "de"


def _regive(cols, rng, pools: Pools, idx, differ_from=None) -> None:
    """Draw new given names matching sex and name origin (different from `differ_from`'s)."""
    if len(idx) == 0:
        return
    origin, sex = cols["name_origin"][idx], cols["sex"][idx]
    table = {("de", "M"): pools.de_given_m, ("de", "F"): pools.de_given_f,
             ("en", "M"): pools.en_given_m, ("en", "F"): pools.en_given_f,
             ("cn", "M"): pools.cn_given_m, ("cn", "F"): pools.cn_given_f}
    for (o, s), pool in table.items():
        mask = (origin == o) & (sex == s)
        if not mask.any():
            continue
        pick = rng.integers(0, len(pool), int(mask.sum()))
        new = pool[pick]
        if differ_from is not None:
            clash = new == cols["given_name"][differ_from[mask]]
            new[clash] = pool[(pick[clash] + 1) % len(pool)]
        cols["given_name"][idx[mask]] = new


def _company_owners(cols, orgs, is_cn, counter: int) -> None:
    """Each owned company shares address and phone with an ordinary person of its locale."""
    cols["hard_case"][orgs] = None  # set again below for the companies an owner is found for
    ordinary = (cols["party_type"] == "person") & (cols["hard_case"] == None)  # noqa: E711
    for locale_cn in (False, True):
        these = orgs[is_cn[orgs] == locale_cn]
        pool = np.flatnonzero(ordinary & (is_cn == locale_cn))[::-1]  # tail of the segment
        these = these[: len(pool)]
        owners = pool[: len(these)]
        cols["hard_case"][these] = "company_owner"
        cols["hard_case"][owners] = "company_owner"
        ids = np.array([f"HN{counter + i + 1:07d}" for i in range(len(these))], dtype=object)
        counter += len(these)
        cols["hard_case_group"][these] = ids
        cols["hard_case_group"][owners] = ids
        for c in ["street", "street_native", "house_number", "postcode", "city", "city_native",
                  "district", "district_native", "state", "_zip4", "_city_idx"]:
            cols[c][these] = cols[c][owners]
        cols["landline_ndc"][owners] = cols["_landline_area"][owners]
        cols["landline_sub"][owners] = cols["_landline_sub_all"][owners]
        cols["landline_ndc"][these] = cols["landline_ndc"][owners]
        cols["landline_sub"][these] = cols["landline_sub"][owners]
        if not locale_cn:  # German owner-run firms carry the owner's name: "Müller Bau GmbH"
            de_form = cols["org_legal_form"][these] != "LTD"
            industry = np.array([b.split(" ", 1)[-1] for b in cols["org_name_base"][these]], dtype=object)
            cols["org_name_base"][these[de_form]] = cols["family_name"][owners[de_form]] + " " + industry[de_form]
    refresh_org_names(cols, orgs)


def _emails(cols, rng, n, is_cn, person, groups, west: str = "DE") -> None:
    given = ascii_fold(pa.array(cols.get("given_name_latin", cols["given_name"]), pa.string()))
    family = ascii_fold(pa.array(cols.get("family_name_latin", cols["family_name"]), pa.string()))
    given = np.array(given.to_numpy(zero_copy_only=False), dtype=object)
    family = np.array(family.to_numpy(zero_copy_only=False), dtype=object)
    given[given == None] = ""  # noqa: E711  (organizations: their e-mail is built below)
    family[family == None] = ""  # noqa: E711
    style = rng.integers(0, 4, n)
    digits = rng.integers(1, 99, n).astype(str).astype(object)
    local = np.where(style == 0, given + "." + family,
                     np.where(style == 1, np.array([g[:1] if g else "" for g in given], dtype=object) + "." + family,
                              np.where(style == 2, family + given, given + digits)))
    qq = rng.integers(10_000_000, 3_000_000_000, n).astype(str).astype(object)
    west_domains = EMAIL_DOMAINS_US if west == "US" else EMAIL_DOMAINS_DE
    domain = np.where(is_cn, EMAIL_DOMAINS_CN[rng.integers(0, len(EMAIL_DOMAINS_CN), n)],
                      west_domains[rng.integers(0, len(west_domains), n)])
    personal = np.where(is_cn & (rng.random(n) < 0.4), qq + "@qq.com", local + "@" + domain)
    org_domain = np.array([
        (b or "").lower().replace(" ", "-") for b in ascii_fold(
            pa.array(cols["org_name_base"], pa.string())).to_numpy(zero_copy_only=False)], dtype=object)
    # a web domain belongs to one company: a namesake elsewhere adds its city
    orgs = np.flatnonzero(~person)
    taken = _repeated(org_domain[orgs], np.zeros(len(orgs), dtype=int))
    city_slug = np.array([(c or "").lower().replace(" ", "-") for c in ascii_fold(
        pa.array(cols["city"][orgs[taken]], pa.string())).to_numpy(zero_copy_only=False)],
        dtype=object)
    org_domain[orgs[taken]] = org_domain[orgs[taken]] + "-" + city_slug
    org_mail = np.where(rng.random(n) < 0.5, "info@", "kontakt@").astype(object) + org_domain + np.where(
        is_cn, ".com.cn", ".com" if west == "US" else ".de").astype(object)
    email = np.where(person, personal, org_mail)
    email[person & (rng.random(n) > 0.85)] = None
    # distinct entities must not share an address unless a household shares it on purpose
    present = np.flatnonzero(email != None)  # noqa: E711
    clash = present[_repeated(email[present], np.zeros(len(present), dtype=int))]
    email[clash] = [e.replace("@", f".{i}@", 1) for e, i in zip(email[clash], clash, strict=True)]
    for kind, members, heads, ranks in groups:
        if kind != "household":
            continue
        _, block = np.unique(heads, return_inverse=True)
        shared = (rng.random(block.max() + 1) < 0.3)[block] & (ranks > 0)
        email[members[shared]] = email[heads[shared]]
    cols["email"] = email


def _national_ids(cols, rng, n, is_cn, person, city_idx, west: str = "DE") -> None:
    ids = np.full(n, None, dtype=object)
    kinds = np.full(n, None, dtype=object)
    cn = np.flatnonzero(person & is_cn)
    de = np.flatnonzero(person & ~is_cn)
    region_lists = [c[5] for c in CN_CITIES]
    pick = rng.random(len(cn))
    region = np.array([int(region_lists[ci][int(p * len(region_lists[ci]))])
                       for ci, p in zip(np.minimum(city_idx[cn], len(CN_CITIES) - 1), pick, strict=True)])
    male = cols["sex"][cn] == "M"
    ids[cn] = cn_resident_ids(rng, region, cols["birth_date"][cn], male).to_numpy(zero_copy_only=False)
    kinds[cn] = "cn_ric"
    if west == "US":
        ids[de] = us_ssns(rng, len(de)).to_numpy(zero_copy_only=False)
        kinds[de] = "us_ssn"
    else:
        ids[de] = de_tax_ids(rng, len(de)).to_numpy(zero_copy_only=False)
        kinds[de] = "de_idnr"
    cols["national_id"], cols["national_id_type"] = ids, kinds
