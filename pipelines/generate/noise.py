"""Noise the source systems add: which records get it (at configured rates) and how values change.

Each source keeps a `NoiseBook`: it draws the records that get a kind of noise among the eligible
ones and remembers both, so the ground truth lists the noise per record and the summary can report
realised rates against asked ones.
"""

from __future__ import annotations

import numpy as np

from pipelines.generate.config import NoiseRates

KEYBOARD_NEIGHBOURS = {
    "a": "sqwz", "b": "vnhg", "c": "xvdf", "d": "sfer", "e": "wrd", "f": "dgrt", "g": "fhty",
    "h": "gjzu", "i": "uok", "j": "hkui", "k": "jlio", "l": "kop", "m": "nj", "n": "bmh",
    "o": "iplk", "p": "ol", "q": "wa", "r": "etf", "s": "adwx", "t": "rgz", "u": "zij",
    "v": "cbf", "w": "qes", "x": "ycs", "y": "xa", "z": "tuh",
}
RECORD_NOISE = ["typo", "nickname", "swapped_day_month", "swapped_name_order", "missing_field",
                "wrong_column", "invalid_id_checksum", "legal_form_variant", "malformed_date"]
ENTITY_NOISE = ["moved", "surname_change"]
NOISE_KINDS = RECORD_NOISE + ENTITY_NOISE
# Kinds of hard cases beyond noise, listed per record in the truth's `kinds` (with the noise
# kinds and the entity-level ones: organization, company_owner, related_company).
RECORD_KINDS = ["english_given_name", "cantonese_romanisation", "party_type_wrong",
                "full_name_in_family_field", "mobile_changed"]
ENTITY_KINDS = ["organization", "company_owner", "related_company"]


class NoiseBook:
    """Chooses noisy records per kind and records eligibility, for one source's rows."""

    def __init__(self, rng: np.random.Generator, rates: NoiseRates, n: int) -> None:
        self.rng = rng
        self.rates = rates
        self.n = n
        self.applied = {kind: np.zeros(n, dtype=bool) for kind in NOISE_KINDS + RECORD_KINDS}
        self.eligible = dict.fromkeys(RECORD_NOISE + RECORD_KINDS, 0)
        # Kinds draw from their own stream (spawning leaves `rng` untouched), so adding or
        # re-rating a kind does not reshuffle the noise every other record already has.
        self.kind_rng = rng.spawn(1)[0]

    def choose(self, kind: str, eligible: np.ndarray) -> np.ndarray:
        """Draw the records that get `kind` among the eligible ones (Bernoulli at the rate)."""
        eligible = np.asarray(eligible, dtype=bool)
        chosen = eligible & (self.rng.random(self.n) < getattr(self.rates, kind))
        self.applied[kind] |= chosen
        self.eligible[kind] += int(eligible.sum())
        return chosen

    @classmethod
    def concat(cls, first: NoiseBook, second: NoiseBook) -> NoiseBook:
        """One book for two batches of a system's records (a later night's rows after the first's)."""
        book = cls(first.rng, first.rates, first.n + second.n)
        book.applied = {k: np.r_[first.applied[k], second.applied[k]] for k in first.applied}
        book.eligible = {k: first.eligible[k] + second.eligible[k] for k in first.eligible}
        return book

    def choose_kind(self, kind: str, eligible: np.ndarray, rate: float) -> np.ndarray:
        """Like `choose`, for the hard-case kinds (their own random stream and rates)."""
        eligible = np.asarray(eligible, dtype=bool)
        chosen = eligible & (self.kind_rng.random(self.n) < rate)
        self.applied[kind] |= chosen
        self.eligible[kind] += int(eligible.sum())
        return chosen

    def mark(self, kind: str, mask: np.ndarray) -> None:
        """Label records changed by an entity-level event (move, marriage) decided elsewhere."""
        self.applied[kind] |= mask


def typos(values: list[str], rng: np.random.Generator) -> list[str]:
    """One keyboard slip per value: swap, drop, double or hit a neighbouring key."""
    ops = rng.integers(0, 4, len(values))
    spots = rng.random(len(values))
    keys = rng.random(len(values))
    out = []
    for value, op, spot, key in zip(values, ops.tolist(), spots.tolist(), keys.tolist(), strict=True):
        if not value or len(value) < 3:
            out.append(value)
            continue
        i = 1 + int(spot * (len(value) - 1))  # keep the first letter: people rarely mistype it
        j = i + 1 if i + 1 < len(value) else i - 1  # neighbour to swap with, never position 0
        a, b = min(i, j), max(i, j)
        new = value
        if op == 0 and value[a] != value[b]:
            new = value[:a] + value[b] + value[a] + value[b + 1:]
        elif op == 1:
            new = value[:i] + value[i + 1:]
        elif op == 2:
            new = value[:i] + value[i] + value[i:]
        if new == value:
            c = value[i].lower()
            near = KEYBOARD_NEIGHBOURS.get(c, "e")
            r = near[int(key * len(near))]
            if r == c:
                r = "x" if c != "x" else "y"
            new = value[:i] + (r.upper() if value[i].isupper() else r) + value[i + 1:]
        out.append(new)
    return out


def swap_day_month(dates: np.ndarray) -> np.ndarray:
    """1985-03-14 stays, 1985-03-07 becomes 1985-07-03 (callers pass only day <= 12 dates)."""
    years = dates.astype("datetime64[Y]")
    months = dates.astype("datetime64[M]")
    month = (months - years.astype("datetime64[M]")).astype(int) + 1
    day = (dates - months.astype("datetime64[D]")).astype(int) + 1
    return (years.astype("datetime64[M]") + (day - 1).astype("timedelta64[M]")).astype(
        "datetime64[D]") + (month - 1).astype("timedelta64[D]")


def swappable_birth_dates(dates: np.ndarray) -> np.ndarray:
    """Dates whose day and month differ and could be read the other way round (day <= 12)."""
    valid = ~np.isnat(dates)
    safe = np.where(valid, dates, np.datetime64("2000-01-01"))
    months = safe.astype("datetime64[M]")
    month = (months - safe.astype("datetime64[Y]").astype("datetime64[M]")).astype(int) + 1
    day = (safe - months.astype("datetime64[D]")).astype(int) + 1
    return valid & (day <= 12) & (day != month)


def pick_present_field(rng: np.random.Generator, present: np.ndarray) -> np.ndarray:
    """For each row of a (rows x fields) presence matrix, a random present field (-1 if none)."""
    priority = rng.random(present.shape) * present
    choice = priority.argmax(axis=1)
    return np.where(present.any(axis=1), choice, -1)
