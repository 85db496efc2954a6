"""Postal addresses: split into street, house number, postcode, city, country (ISO alpha-2).

Forms seen in the exports: a street line "Hauptstraße 12" beside postcode/city columns, a
nested object, one line "Hauptstraße 12, 10115 Berlin, DE", and Chinese "北京市朝阳区建国路88号,
100022" (city before district and road, house number ending in 号). Called per DISTINCT address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import yaml

from pipelines.settings import SCHEMAS_DIR
from pipelines.standardize.text import fold, has_han, nfkc

GERMAN_STREET = re.compile(
    r"^(?P<street>.*?[^\d\s,][^,]*?)[\s,]+(?P<number>\d+\s*[a-zA-Z]?(?:\s*[-/]\s*\d+\s*[a-zA-Z]?)?)$")
LEADING_NUMBER_STREET = re.compile(r"^(?P<number>\d+[a-zA-Z]?(?:-\d+[a-zA-Z]?)?)\s+(?P<street>\D.*)$")
CHINESE_STREET = re.compile(r"^(?P<street>.+?)(?P<number>\d+(?:-\d+)?)\s*号(?P<rest>.*)$")
CHINESE_CITY = re.compile(r"^(?P<province>[^省]{2,7}省)?(?P<city>[^市区县]{1,7}市)")
CHINESE_DISTRICT = re.compile(r"^[^市区县路街道]{1,6}[区县]")
POSTCODE_CITY = re.compile(r"^(?P<postcode>(?:[A-Z]{1,2}-)?\d{4,6})\s+(?P<city>\D.*)$")
CITY_POSTCODE = re.compile(r"^(?P<city>\D+?)\s+(?P<postcode>\d{4,6})$")
POSTCODE_ONLY = re.compile(r"^\d{4,6}$")
STREET_ABBREVIATION = re.compile(r"(?<=[a-z])str\b|\bstr\b")


@dataclass(frozen=True)
class Address:
    street: str | None = None
    house_number: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = None


@cache
def country_names() -> dict[str, str]:
    """Case-folded country name or code -> ISO alpha-2 (schemas/reference/countries.yaml)."""
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "countries.yaml").read_text(encoding="utf-8"))
    lookup: dict[str, str] = {}
    for code, names in ref["countries"].items():
        lookup[code.casefold()] = code
        for name in names:
            lookup.setdefault(name.casefold(), code)
    lookup["uk"] = "GB"
    return lookup


def normalise_country(text: str | None) -> str | None:
    """ISO 3166-1 alpha-2 for a code or a country name in en/de/zh/fr; None if unknown."""
    text = nfkc(text)
    if text is None:
        return None
    return country_names().get(text.casefold().strip(" ."))


def split_street_line(line: str | None) -> tuple[str | None, str | None, str | None]:
    """(street, house number, city found in the line) of "Hauptstraße 12" / "朝阳区建国路88号"."""
    line = nfkc(line)
    if line is None:
        return None, None, None
    if has_han(line):
        compact = line.replace(" ", "")
        city = None
        found = CHINESE_CITY.match(compact)
        if found:
            city, compact = found.group("city"), compact[found.end():]
        # The district (朝阳区) is left out of the street: sources name it or not.
        compact = CHINESE_DISTRICT.sub("", compact, count=1) or compact
        m = CHINESE_STREET.match(compact)
        if m:
            return m.group("street") + m.group("rest"), m.group("number"), city
        return compact or None, None, city
    m = GERMAN_STREET.match(line)
    if m:
        return m.group("street").strip(" ,"), re.sub(r"\s+", "", m.group("number")), None
    m = LEADING_NUMBER_STREET.match(line)
    if m:
        return m.group("street").strip(" ,"), m.group("number"), None
    return line, None, None


def parse_one_line(line: str | None) -> Address:
    """Address written in one field, parts separated by commas."""
    line = nfkc(line)
    if line is None:
        return Address()
    parts = [p.strip() for p in re.split(r"[,，]", line) if p.strip()]
    country = postcode = city = None
    if len(parts) > 1 and normalise_country(parts[-1]):
        country = normalise_country(parts.pop())
    rest = []
    for part in parts[1:]:
        m = POSTCODE_CITY.match(part) or CITY_POSTCODE.match(part)
        if m and postcode is None:
            postcode, city = m.group("postcode"), m.group("city")
        elif POSTCODE_ONLY.match(part) and postcode is None:
            postcode = part
        else:
            rest.append(part)
    if city is None and rest:
        city = rest.pop(0)
    street, number, line_city = split_street_line(parts[0]) if parts else (None, None, None)
    return Address(street, number, postcode, city or line_city, country)


def standardize_address(street_line: str | None = None, one_line: str | None = None,
                        street: str | None = None, house_number: str | None = None,
                        postcode: str | None = None, city: str | None = None,
                        country: str | None = None, default_country: str | None = None) -> Address:
    """Canonical address from whichever parts a source gives; street and city folded."""
    parsed = parse_one_line(one_line) if one_line else Address()
    line_city = None
    if street_line and not street:
        street, number, line_city = split_street_line(street_line)
        house_number = house_number or number
    street = street or parsed.street
    house_number = nfkc(house_number) or parsed.house_number
    city = nfkc(city) or parsed.city or line_city
    postcode = nfkc(postcode) or parsed.postcode
    resolved_country = normalise_country(country) or parsed.country
    if resolved_country is None and any(has_han(p) for p in (street, city, one_line) if p):
        resolved_country = "CN"
    return Address(
        street=fold_street(street),
        house_number=house_number,
        postcode=postcode.replace(" ", "").upper() if postcode else None,
        city=fold_city(city),
        country=resolved_country or default_country,
    )


def fold_street(street: str | None) -> str | None:
    folded = fold(street)
    return STREET_ABBREVIATION.sub("strasse", folded) if folded else None


def fold_city(city: str | None) -> str | None:
    city = nfkc(city)
    if city and has_han(city) and len(city) > 2 and city.endswith("市"):
        city = city[:-1]  # 北京市 and 北京 are the same city
    return fold(city)
