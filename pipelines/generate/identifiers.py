"""National IDs, company registration numbers and phone numbers, generated vectorized.

Check digits follow the published algorithms (GB 11643 for CN resident IDs, ISO 7064 MOD 11,10 for
the German IdNr, GB 32100 for unified social credit codes); the tests confirm every value with
python-stdnum and every phone number's type with phonenumbers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
RIC_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
RIC_CHECK = np.array(list("10X98765432"))
USCC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])
DE_MOBILE_PREFIXES = [("151", 8), ("152", 8), ("157", 8), ("159", 8), ("160", 7), ("162", 8),
                      ("170", 7), ("171", 7), ("172", 8), ("173", 8), ("176", 8), ("177", 8), ("178", 8),
                      ("179", 8)]
CN_MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                      "153", "155", "158", "159", "166", "173", "176", "177", "180", "181", "185",
                      "186", "187", "188", "189", "191", "198", "199"]


def chars_to_strings(codes: np.ndarray) -> pa.Array:
    """Rows of ASCII codes (n x width uint8) -> a pyarrow string array, without a Python loop."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    fixed = codes.view(f"S{codes.shape[1]}").ravel()
    return pc.cast(pa.array(fixed, type=pa.binary()), pa.string())


def digits_of(values: np.ndarray, width: int) -> np.ndarray:
    """Decimal digits of non-negative integers, most significant first (n x width)."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values.astype(np.int64)[:, None] // powers) % 10


def int_strings(values: np.ndarray, width: int) -> pa.Array:
    """Integers as zero-padded decimal strings of fixed width."""
    return chars_to_strings(digits_of(values, width) + ord("0"))


def cn_resident_ids(rng: np.random.Generator, region_codes: np.ndarray, birth_dates: np.ndarray,
                    male: np.ndarray) -> pa.Array:
    """18-character CN resident IDs: region, birth date, sequence (odd for men), GB 11643 check.

    Sequence numbers are ranked within (region, birth date, sex) so no two people share an ID.
    """
    n = len(region_codes)
    dates = birth_dates.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    ymd = years * 10000 + months * 100 + days
    group = (region_codes.astype(np.int64) * 100_000_000 + ymd) * 2 + male.astype(np.int64)
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    offset = np.empty(n, dtype=np.int64)
    offset[order] = rng.integers(0, 300, n)[order][group_start]
    seq = 2 * ((offset + rank) % 499) + np.where(male, 1, 2)
    body = region_codes.astype(np.int64) * 10**11 + ymd * 1000 + seq
    digits = digits_of(body, 17)
    check = RIC_CHECK[(digits * RIC_WEIGHTS).sum(axis=1) % 11]
    codes = np.column_stack([digits + ord("0"), np.array([ord(c) for c in check], dtype=np.int64)])
    return chars_to_strings(codes)


def _idnr_check_digit(digits: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11,10 check digit over the rows of a digit matrix."""
    product = np.full(len(digits), 10)
    for column in digits.T:
        total = (column + product) % 10
        total[total == 0] = 10
        product = (total * 2) % 11
    return (11 - product) % 10


def de_tax_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """Distinct 11-digit German IdNr: exactly one digit repeated in the first ten, no leading 0."""
    result = np.zeros((n, 11), dtype=np.int64)
    todo = np.arange(n)
    while len(todo):
        m = len(todo)
        digits = np.argsort(rng.random((m, 10)), axis=1)  # a permutation of 0..9 per row
        digits[:, 9] = digits[np.arange(m), rng.integers(0, 9, m)]  # one digit twice, one absent
        digits = np.take_along_axis(digits, np.argsort(rng.random((m, 10)), axis=1), axis=1)
        result[todo, :10] = digits
        result[todo, 10] = _idnr_check_digit(digits)
        values = (result * 10 ** np.arange(10, -1, -1, dtype=np.int64)).sum(axis=1)
        _, first = np.unique(values, return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[first] = False
        todo = np.flatnonzero((result[:, 0] == 0) | duplicate)
    return chars_to_strings(result + ord("0"))


def cn_credit_codes(rng: np.random.Generator, region_codes: np.ndarray) -> pa.Array:
    """18-character unified social credit codes (authority 9, type 1, region, org code, check)."""
    n = len(region_codes)
    idx = np.empty((n, 17), dtype=np.int64)
    idx[:, 0], idx[:, 1] = 9, 1
    idx[:, 2:8] = digits_of(region_codes.astype(np.int64), 6)
    idx[:, 8:16] = rng.integers(0, 10, (n, 8))  # organisation code: digits, last one may be a letter
    idx[:, 16] = rng.integers(0, len(USCC_ALPHABET), n)
    check = (31 - (idx * USCC_WEIGHTS).sum(axis=1) % 31) % 31
    alphabet = np.array([ord(c) for c in USCC_ALPHABET])
    return chars_to_strings(alphabet[np.column_stack([idx, check])])


def unique_ints(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    """n distinct random integers in [low, high)."""
    values = rng.integers(low, high, n)
    while True:
        _, first = np.unique(values, return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[first] = False
        if not duplicate.any():
            return values
        values[duplicate] = rng.integers(low, high, int(duplicate.sum()))


def _distinct_subscribers(rng: np.random.Generator, group: np.ndarray,
                          widths: np.ndarray) -> np.ndarray:
    """Random subscriber numbers below 10**width, distinct within each group (prefix/area code)."""
    limit = 10 ** widths.astype(np.int64)
    values = rng.integers(0, 10**8, len(group)) % limit
    while True:
        key = group.astype(np.int64) * 10**9 + values
        _, first = np.unique(key, return_index=True)
        duplicate = np.ones(len(group), dtype=bool)
        duplicate[first] = False
        if not duplicate.any():
            return values
        values[duplicate] = rng.integers(0, 10**8, int(duplicate.sum())) % limit[duplicate]


def _padded(values: np.ndarray, widths: np.ndarray) -> pa.Array:
    return _truncate_left(int_strings(values, 8), widths)


def _truncate_left(values: pa.Array, widths: np.ndarray) -> pa.Array:
    """Keep the last `width` characters of each 8-character string."""
    out = values
    for width in sorted(set(widths.tolist())):
        out = pc.if_else(pa.array(widths == width), pc.utf8_slice_codeunits(values, 8 - width), out)
    return out


def mobile_numbers(rng: np.random.Generator, is_cn: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Distinct mobile numbers as (national destination code, subscriber number) strings."""
    n = len(is_cn)
    de_pick = rng.integers(0, len(DE_MOBILE_PREFIXES), n)
    de_len = np.array([length for _, length in DE_MOBILE_PREFIXES])[de_pick]
    cn_pick = rng.integers(0, len(CN_MOBILE_PREFIXES), n)
    ndc = np.where(is_cn, np.array(CN_MOBILE_PREFIXES, dtype=object)[cn_pick],
                   np.array([p for p, _ in DE_MOBILE_PREFIXES], dtype=object)[de_pick])
    widths = np.where(is_cn, 8, de_len)
    group = np.where(is_cn, 100 + cn_pick, de_pick)
    return pa.array(ndc, pa.string()), _padded(_distinct_subscribers(rng, group, widths), widths)


def landline_numbers(rng: np.random.Generator, area_codes: np.ndarray,
                     widths: np.ndarray) -> pa.Array:
    """Fixed-line subscriber numbers (first digit 2-8), distinct within each area code."""
    _, group = np.unique(area_codes, return_inverse=True)
    rest = _distinct_subscribers(rng, group, widths - 1)
    first = (rest + group * 7919) % 7 + 2  # any 2-8 lead digit; derived so numbers stay distinct
    return _padded(first * 10 ** (widths.astype(np.int64) - 1) + rest, widths)


def e164(country_code: pa.Array, ndc: pa.Array, sub: pa.Array) -> pa.Array:
    """'+<cc><ndc><sub>'; null when any part is null."""
    return pc.binary_join_element_wise("+", country_code, ndc, sub, "")


def format_phones(style: np.ndarray, country_code: pa.Array, ndc: pa.Array, sub: pa.Array,
                  is_cn: np.ndarray, is_mobile: bool) -> pa.Array:
    """Write phone numbers the ways people and systems write them; `style` picks one of 5.

    German numbers keep the subscriber number in one block (`0201 596886`, `(030) 1234567`);
    Chinese ones are grouped 4+4 (`138 1234 5678`, `(010) 1234 5678`). Chinese mobiles carry no
    trunk 0 at home, so their domestic form is the bare 11 digits.
    """
    join = pc.binary_join_element_wise
    cn = pa.array(is_cn)
    domestic = pc.if_else(cn, ndc, join("0", ndc, "")) if is_mobile else join("0", ndc, "")
    grouped = pc.if_else(cn, join(pc.utf8_slice_codeunits(sub, 0, 4), pc.utf8_slice_codeunits(sub, 4), " "),
                         sub)
    dashed = (pc.if_else(cn, join(pc.utf8_slice_codeunits(sub, 0, 4), pc.utf8_slice_codeunits(sub, 4), "-"),
                         sub) if is_mobile else sub)
    candidates = [
        join("+", country_code, " ", ndc, " ", grouped, ""),   # +49 151 23456789 / +86 138 1234 5678
        join(domestic, " ", grouped, ""),                       # 0151 23456789 / 138 1234 5678
        join(domestic, "-", dashed, ""),                        # 0201-596886 / 138-1234-5678 / 010-62345678
        join(domestic, sub, ""),                                # 015123456789 / 13812345678
        pc.if_else(cn, join("(", domestic, ") ", grouped, ""),  # (010) 1234 5678
                   join(domestic, "/", sub, "")),               # 030/1234567
    ]
    if is_mobile:
        candidates[4] = pc.if_else(cn, join("+", country_code, ndc, sub, ""), candidates[4])  # +8613812345678
    return pc.choose(pa.array(style.astype(np.int8)), *candidates)


def corrupt_check_character(rng: np.random.Generator, ids: list[str]) -> list[str]:
    """Change one character of each ID's body (a mistyped digit): the checksum no longer holds."""
    out = []
    positions = rng.random(len(ids))
    replacements = rng.integers(1, 10, len(ids))
    for value, pos, shift in zip(ids, positions, replacements, strict=True):
        # Every weight of these checksums is nonzero modulo a prime, so a single changed digit
        # always breaks the check (a change in the region/date part may break more; still invalid).
        digit_positions = [i for i, c in enumerate(value[:-1]) if c.isdigit()]
        i = digit_positions[int(pos * len(digit_positions))]
        new_digit = str((int(value[i]) + int(shift)) % 10)
        out.append(value[:i] + new_digit + value[i + 1:])
    return out


# --- US identifiers and phones (population.western_country: US) ----------------------------------

US_SSN_BLACKLIST = {78051120, 457555462, 219099999}
# EIN prefixes the IRS assigns (python-stdnum's us/ein.dat lists the same campuses)
US_EIN_PREFIXES = np.array([1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 20, 21, 22, 23, 24, 25, 26,
                            27, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
                            48, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67,
                            68, 71, 72, 73, 74, 75, 76, 77, 80, 81, 82, 83, 84, 85, 86, 87, 88, 90, 91,
                            92, 93, 94, 95, 98, 99])


def us_ssns(rng: np.random.Generator, n: int) -> pa.Array:
    """Distinct SSNs NNN-NN-NNNN (no check digit): area 001-899 but not 666, group and serial non-zero."""
    values = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    while len(todo):
        area = rng.integers(1, 900, len(todo))
        area[area == 666] = 667
        values[todo] = area * 10**6 + rng.integers(1, 100, len(todo)) * 10**4 + rng.integers(1, 10**4, len(todo))
        _, first = np.unique(values, return_index=True)
        duplicate = np.ones(n, dtype=bool)
        duplicate[first] = False
        todo = np.flatnonzero(duplicate | np.isin(values, list(US_SSN_BLACKLIST)))
    digits = int_strings(values, 9)
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(digits, 0, 3), pc.utf8_slice_codeunits(digits, 3, 5),
                                       pc.utf8_slice_codeunits(digits, 5), "-")


def us_eins(rng: np.random.Generator, n: int) -> pa.Array:
    """Distinct employer identification numbers NN-NNNNNNN with a prefix the IRS assigns."""
    prefix = US_EIN_PREFIXES[rng.integers(0, len(US_EIN_PREFIXES), n)]
    values = prefix * 10**7 + unique_ints(rng, 0, 10**7, n)
    digits = int_strings(values, 9)
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(digits, 0, 2), pc.utf8_slice_codeunits(digits, 2), "-")


def format_us_phones(style: np.ndarray, ndc: pa.Array, sub: pa.Array) -> pa.Array:
    """North American numbers as people write them; `style` picks one of 5 (area code = ndc)."""
    join = pc.binary_join_element_wise
    exchange, line = pc.utf8_slice_codeunits(sub, 0, 3), pc.utf8_slice_codeunits(sub, 3)
    return pc.choose(pa.array(style.astype(np.int8)),
                     join("+1 ", ndc, " ", exchange, " ", line, ""),     # +1 212 734 1234
                     join("(", ndc, ") ", exchange, "-", line, ""),      # (212) 734-1234
                     join(ndc, "-", exchange, "-", line, ""),            # 212-734-1234
                     join(ndc, exchange, line, ""),                      # 2127341234
                     join(ndc, ".", exchange, ".", line, ""))            # 212.734.1234
