"""Later nights: the same population one or more days on (`ucv generate --night N`).

Night 1 is what `generate_exports` always writes. Each later night keeps every record of the
night before byte for byte, and adds one day of changes: customers who gave the policy
administration a new mobile number (their servicing records show it, updated that day; records
elsewhere keep the old one — truth kind `mobile_changed`) and new leads entered by existing
customers. Changes draw from their own random stream per night, so night 2 of a seed is always
night 1 plus the same changes.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.entities import Entities, calling_codes
from pipelines.generate.identifiers import e164, int_strings, landline_numbers, mobile_numbers
from pipelines.generate.portfolio import CHANNELS, ORG_PRODUCTS, PERSON_PRODUCTS, _times

DAY = np.timedelta64(86400, "s")
# keys of records first exported on a later night: above any serial a first night hands out
LATER_KEY_BASE = 90_000_000


def later_nights(entities: Entities, sources: dict, config: GeneratorConfig, seed: int,
                 export_date: date, night: int) -> dict[str, np.ndarray]:
    """Apply nights 2..`night` to the entities and the servicing rows (in place); returns the new
    sales rows of those nights (entity, time, channel, product, policy, night)."""
    from pipelines.generate.exports import stage_rng

    cols = entities.columns
    n = len(entities)
    cols["_new_mobile_ndc"] = cols["mobile_ndc"].copy()
    cols["_new_mobile_sub"] = cols["mobile_sub"].copy()
    cols["_mobile_changed"] = np.zeros(n, dtype=bool)
    servicing = sources["servicing"]
    servicing["new_mobile"] = np.zeros(len(servicing["entity"]), dtype=bool)
    in_servicing = np.bincount(servicing["entity"], minlength=n) > 0
    person = cols["party_type"] == "person"
    first_night = np.datetime64(export_date, "D").astype("datetime64[s]")
    new_rows: list[dict[str, np.ndarray]] = []
    for day in range(2, night + 1):
        rng = stage_rng(seed, f"night_{day}")
        start = first_night + (day - 2) * DAY  # changes during the day before that night's export
        has_mobile = cols["_new_mobile_sub"] != None  # noqa: E711
        chosen = np.flatnonzero(person & has_mobile & in_servicing & (rng.random(n) < config.kinds.mobile_changed))
        _new_mobiles(cols, rng, chosen)
        cols["_mobile_changed"][chosen] = True
        updated = np.isin(servicing["entity"], chosen)
        servicing["new_mobile"] |= updated
        servicing["time"][updated] = _times(rng, np.full(int(updated.sum()), start),
                                            np.full(int(updated.sum()), start + DAY))
        k = int(round(config.kinds.new_records * n))
        who = np.sort(rng.choice(n, k, replace=False))
        products = np.where(person[who], np.array(PERSON_PRODUCTS, dtype=object)[rng.integers(0, 5, k)],
                            np.array(ORG_PRODUCTS, dtype=object)[rng.integers(0, 4, k)])
        new_rows.append({"entity": who, "time": _times(rng, np.full(k, start), np.full(k, start + DAY)),
                         "channel": CHANNELS[rng.integers(0, len(CHANNELS), k)], "product": products,
                         "policy": np.full(k, -1), "night": np.full(k, day)})
    return {key: np.concatenate([r[key] for r in new_rows]) for key in new_rows[0]}


def _new_mobiles(cols: dict[str, np.ndarray], rng: np.random.Generator, chosen: np.ndarray) -> None:
    """Fresh numbers for `chosen`, distinct from every number anyone has (old or new)."""
    taken = set(_e164(cols, "mobile_ndc", "mobile_sub")) | set(_e164(cols, "_new_mobile_ndc", "_new_mobile_sub"))
    taken |= set(cols["e164_landline"])
    todo = chosen
    while len(todo):
        is_cn = cols["country"][todo] == "CN"
        ndc_arr, sub_arr = mobile_numbers(rng, is_cn)
        ndc = np.asarray(ndc_arr.to_numpy(zero_copy_only=False), dtype=object)
        sub = np.asarray(sub_arr.to_numpy(zero_copy_only=False), dtype=object)
        us = cols["country"][todo] == "US"
        if us.any():  # North American mobiles: an area code of the same pool, seven digits
            ndc[us] = cols["_new_mobile_ndc"][todo[us]]
            sub[us] = np.asarray(landline_numbers(rng, ndc[us], np.full(int(us.sum()), 7)).to_numpy(
                zero_copy_only=False), dtype=object)
        numbers = ["+" + cc + a + b for cc, a, b in zip(calling_codes(cols["country"][todo]), ndc, sub, strict=True)]
        fresh = np.array([number not in taken for number in numbers], dtype=bool)
        _, first = np.unique(np.array(numbers, dtype=object), return_index=True)
        fresh &= np.isin(np.arange(len(numbers)), first)
        cols["_new_mobile_ndc"][todo[fresh]] = ndc[fresh]
        cols["_new_mobile_sub"][todo[fresh]] = sub[fresh]
        taken |= {number for number, ok in zip(numbers, fresh, strict=True) if ok}
        todo = todo[~fresh]


def _e164(cols: dict[str, np.ndarray], ndc: str, sub: str) -> list[str]:
    values = e164(pa.array(calling_codes(cols["country"]), pa.string()), pa.array(cols[ndc], pa.string()),
                  pa.array(cols[sub], pa.string())).to_pylist()
    return [v for v in values if v is not None]


def later_keys(prefix: str, nights: np.ndarray, width: int) -> pa.Array:
    """Native keys of records first exported on a later night ('L91000001'), unique per night."""
    serial = np.zeros(len(nights), dtype=np.int64)
    for night in np.unique(nights).tolist():
        mask = nights == night
        serial[mask] = LATER_KEY_BASE + night * 1_000_000 + np.arange(1, int(mask.sum()) + 1)
    return pc.binary_join_element_wise(prefix, int_strings(serial, width), "")
