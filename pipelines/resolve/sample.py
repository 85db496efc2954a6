"""A small hand-made canonical sample with known entities, for tests and for trying the model.

Every entity appears in 1-4 source records with the usual noise (nickname, typo, swapped day and
month, missing fields, name order swapped), and the hard negatives the product must keep apart:
household members, twins, father and son, and common names in one city. Not a generator: the
real synthetic data comes from `ucv generate`; this exists so the resolver can be tested alone.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

GIVEN_M = ["thomas", "michael", "andreas", "stefan", "wei", "jun", "lei", "jian", "peter", "klaus",
           "william", "robert", "hao", "ming", "jan", "lukas"]
GIVEN_F = ["anna", "maria", "sabine", "claudia", "fang", "li", "na", "xiu", "julia", "katrin",
           "elizabeth", "margaret", "yan", "jing", "lena", "sophie"]
NICKNAMES = {"william": "bill", "robert": "bob", "elizabeth": "liz", "margaret": "maggie",
             "thomas": "tom", "michael": "mike", "andreas": "andi", "peter": "pete"}
FAMILY = ["mueller", "schmidt", "schneider", "fischer", "weber", "wang", "li", "zhang", "liu",
          "chen", "meyer", "wagner", "becker", "huang", "zhao", "hoffmann", "schulz", "koch"]
STREETS = ["hauptstrasse", "bahnhofstrasse", "gartenweg", "jianguo lu", "renmin lu", "ringstrasse"]
CITIES = [("berlin", "101"), ("hamburg", "204"), ("beijing", "1000"), ("shanghai", "2000")]


# records rotate through three systems (without touching the random sequence)
SOURCES = ("sales", "servicing", "claims")

def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


class _Builder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.rows: list[dict] = []
        self.entity_no = 0
        self.record_no = 0

    def entity(self, **fields) -> dict:
        self.entity_no += 1
        return {"entity_id": f"E{self.entity_no:05d}", **fields}

    def person(self, *, sex=None, family=None, given=None, birth=None, address=None,
               landline=None, email=None, suffix=None) -> dict:
        rng = self.rng
        sex = sex or rng.choice("MF")
        given = given or rng.choice(GIVEN_M if sex == "M" else GIVEN_F)
        family = family or rng.choice(FAMILY)
        birth = birth or date(1940, 1, 1) + timedelta(days=rng.randrange(0, 60 * 365))
        city, prefix = rng.choice(CITIES)
        address = address or (rng.choice(STREETS), str(rng.randrange(1, 200)),
                              prefix + f"{rng.randrange(0, 99):02d}", city)
        n = self.entity_no + 1
        return self.entity(
            party_type="person", given=given, family=family, sex=sex, birth=birth, suffix=suffix,
            national_id=f"ID{n:08d}", mobile=f"+491510{n:06d}",
            landline=landline or f"+49300{n:06d}",
            email=email or f"{given}.{family}{n}@example.com", address=address)

    def records_of_person(self, e: dict, count: int, hard_case: str | None = None,
                          group: str | None = None) -> None:
        rng = self.rng
        for k in range(count):
            given, family, birth = e["given"], e["family"], e["birth"]
            fields = dict(national_id=e["national_id"], phone_mobile=e["mobile"],
                          phone_landline=e["landline"], email=e["email"], sex=e["sex"])
            if k > 0:  # later records are noisy copies of the first
                noise = rng.choice(["nickname", "typo", "dob_swap", "missing", "swap", "none"])
                if noise == "nickname" and given in NICKNAMES:
                    given = NICKNAMES[given]
                elif noise == "typo":
                    family = _typo(rng, family)
                elif noise == "dob_swap" and birth.day <= 12 and birth.day != birth.month:
                    birth = date(birth.year, birth.day, birth.month)
                elif noise == "missing":
                    for f in rng.sample(["national_id", "phone_mobile", "email", "sex"], 2):
                        fields[f] = None
                elif noise == "swap":
                    given, family = family, given
            street, house, postcode, city = e["address"]
            self.record_no += 1
            canonical = NICKNAMES_REVERSED.get(given, given)
            self.rows.append({
                "source_record_id": f"fixture:{self.record_no:06d}",
                "source_system": SOURCES[self.record_no % len(SOURCES)],
                "party_type": "person", "given_name_norm": given, "family_name_norm": family,
                "given_name_canonical": canonical, "name_suffix": e["suffix"],
                "birth_date": birth, "street": street, "house_number": house,
                "postcode": postcode, "city": city, "country": "DE",
                **fields,
                "entity_id": e["entity_id"], "hard_case": hard_case, "hard_case_group": group,
            })

    def organization(self, name: str, records: int, hard_case: str | None = None,
                     group: str | None = None) -> None:
        rng = self.rng
        e = self.entity()
        n = self.entity_no
        city, prefix = rng.choice(CITIES)
        for k in range(records):
            self.record_no += 1
            self.rows.append({
                "source_record_id": f"fixture:{self.record_no:06d}",
                "source_system": SOURCES[self.record_no % len(SOURCES)],
                "party_type": "organization",
                "org_name_norm": name if k == 0 or rng.random() < 0.5 else _typo(rng, name),
                "org_legal_form": "GMBH", "registration_id": f"HRB{n:06d}" if k != 1 else None,
                "phone_landline": f"+49400{n:06d}", "email": f"info@{name.replace(' ', '')}.de",
                "street": rng.choice(STREETS), "house_number": str(n), "postcode": prefix + "77",
                "city": city, "country": "DE",
                "entity_id": e["entity_id"], "hard_case": hard_case, "hard_case_group": group,
            })


NICKNAMES_REVERSED = {v: k for k, v in NICKNAMES.items()}


def sample_records(seed: int = 7, households: int = 40, singles: int = 120) -> list[dict]:
    """Canonical rows (plus truth columns entity_id, hard_case, hard_case_group)."""
    b = _Builder(seed)
    rng = b.rng
    for _ in range(singles):
        b.records_of_person(b.person(), rng.choice([1, 2, 2, 3, 4]))
    for h in range(households):
        kind = ["household", "twin", "father_son", "common_name"][h % 4]
        group = f"G{h:04d}"
        first = b.person(sex="M")
        members = [first]
        if kind == "household":
            members.append(b.person(sex="F", family=first["family"], address=first["address"],
                                    landline=first["landline"], email=first["email"]))
        elif kind == "twin":
            members.append(b.person(family=first["family"], birth=first["birth"],
                                    address=first["address"], landline=first["landline"]))
        elif kind == "father_son":
            first["suffix"] = "SR"
            members.append(b.person(sex="M", family=first["family"], given=first["given"],
                                    birth=first["birth"] + timedelta(days=365 * 28),
                                    address=first["address"], landline=first["landline"],
                                    suffix="JR"))
        else:
            members.append(b.person(sex="M", family=first["family"], given=first["given"],
                                    address=(rng.choice(STREETS), "7", first["address"][2],
                                             first["address"][3])))
        for member in members:
            b.records_of_person(member, rng.choice([1, 2, 3]), kind, group)
    for i in range(25):
        b.organization(f"{rng.choice(FAMILY)} {rng.choice(['bau', 'logistik', 'trading'])} {i}",
                       rng.choice([1, 2, 3]))
    return b.rows


def write_sample(out_dir: Path, seed: int = 7, **sizes) -> tuple[Path, Path]:
    """Write the sample as staged source_records.parquet and truth/ground_truth.parquet."""
    import pandas as pd

    rows = sample_records(seed, **sizes)
    frame = pd.DataFrame(rows)
    truth_cols = ["source_record_id", "entity_id", "party_type", "hard_case", "hard_case_group"]
    records = frame.drop(columns=["entity_id", "hard_case", "hard_case_group"])
    records["birth_date"] = pd.to_datetime(records["birth_date"]).dt.date
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(exist_ok=True)
    records_path = out_dir / "source_records.parquet"
    truth_path = out_dir / "truth" / "ground_truth.parquet"
    records.to_parquet(records_path, index=False)
    frame[truth_cols].to_parquet(truth_path, index=False)
    return records_path, truth_path
