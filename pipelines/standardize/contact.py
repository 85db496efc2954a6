"""Phones (E.164, mobile vs landline) and e-mail addresses (normalised, checked, no DNS).

Called once per DISTINCT value by the batch standardizer. A phone number written into the
e-mail field is recognised so the caller can move it to the phone fields instead of losing it.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

MOBILE_TYPES = {PhoneNumberType.MOBILE}
LANDLINE_TYPES = {PhoneNumberType.FIXED_LINE}
E164_SHAPE = re.compile(r"^\+[1-9]\d{6,14}$")
PHONE_CHARS = re.compile(r"^\+?[\d\s()./-]{6,}$")
# The plain form most addresses take; these are decided without email-validator (which costs
# ~40 µs a call) and the property tests check that the shortcut agrees with it.
SIMPLE_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


@cache
def phone_regions() -> frozenset[str]:
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def standardize_phone(raw: str | None, region: str | None,
                      kind_hint: str | None = None) -> tuple[str | None, str | None, str | None]:
    """(E.164, 'mobile' | 'landline', quality flag) of a free-format phone number.

    A number valid for its country gets its type from phonenumbers; a number that is only
    possible (right length, unknown range) keeps the column's hint and is flagged.
    """
    if raw is None or not raw.strip():
        return None, None, None
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if region not in phone_regions():
        region = None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None, None, "phone_invalid"
    if not phonenumbers.is_possible_number(number):
        return None, None, "phone_invalid"
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if E164_SHAPE.match(e164) is None:  # "possible" covers fragments like +4901
        return None, None, "phone_invalid"
    if not phonenumbers.is_valid_number(number):
        return e164, kind_hint or "landline", "phone_unverified"
    number_type = phonenumbers.number_type(number)
    if number_type in MOBILE_TYPES:
        return e164, "mobile", None
    if number_type in LANDLINE_TYPES:
        return e164, "landline", None
    # FIXED_LINE_OR_MOBILE (e.g. US), VOIP, ...: the column says which it is meant to be.
    return e164, kind_hint or "landline", None


def looks_like_phone(text: str | None) -> bool:
    if not text or "@" in text:
        return False
    return PHONE_CHARS.match(text.strip()) is not None and sum(c.isdigit() for c in text) >= 6


def standardize_email(raw: str | None) -> tuple[str | None, str | None, str | None]:
    """(e-mail, quality flag, phone found in the e-mail field) — lower-cased and checked."""
    if raw is None or not raw.strip():
        return None, None, None
    text = raw.strip()
    if looks_like_phone(text):
        return None, "email_was_phone", text
    lowered = text.lower()
    if _simple_email_ok(lowered):
        return lowered, None, None
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None, "email_invalid", None
    return checked.normalized.lower(), None, None


def _simple_email_ok(email: str) -> bool:
    if len(email) > 254 or SIMPLE_EMAIL.match(email) is None:
        return False
    local, _, domain = email.rpartition("@")
    if len(local) > 64 or any(len(label) > 63 for label in domain.split(".")):
        return False
    last_two = domain.split(".")[-2:]
    return not any(label in SPECIAL_USE_DOMAIN_NAMES for label in last_two) and \
        domain not in SPECIAL_USE_DOMAIN_NAMES
