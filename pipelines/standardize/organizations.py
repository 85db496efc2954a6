"""Organizations and identifiers: legal forms out of the name, IDs checked with python-stdnum.

An invalid checksum nulls the identifier and flags the record; it never rejects the row.
"""

from __future__ import annotations

import datetime
import importlib
import re
from collections.abc import Callable
from functools import cache, lru_cache

import yaml

from pipelines.settings import SCHEMAS_DIR
from pipelines.standardize.text import fold, has_han, nfkc


@cache
def legal_form_variants() -> tuple[list[tuple[tuple[str, ...], str]], list[tuple[str, str]]]:
    """(folded word sequences -> code, hanzi suffixes -> code), longest first."""
    ref = yaml.safe_load((SCHEMAS_DIR / "reference" / "legal_forms.yaml").read_text(encoding="utf-8"))
    latin: list[tuple[tuple[str, ...], str]] = []
    han: list[tuple[str, str]] = []
    for code, variants in ref["legal_forms"].items():
        for variant in variants:
            if has_han(variant):
                han.append((variant, code))
            else:
                words = tuple((fold(variant) or "").split())
                if words:
                    latin.append((words, code))
    latin.sort(key=lambda item: -len(item[0]))
    han.sort(key=lambda item: -len(item[0]))
    return latin, han


def split_legal_form(name: str | None) -> tuple[str | None, str | None]:
    """(org_name_norm, legal form code): "Müller Bau GmbH" -> ("mueller bau", "GMBH")."""
    name = nfkc(name)
    if name is None:
        return None, None
    latin, han = legal_form_variants()
    compact = name.replace(" ", "")
    for suffix, code in han:
        if compact.endswith(suffix) and len(compact) > len(suffix):
            return fold(compact[: -len(suffix)]), code
    words = tuple((fold(name) or "").split())
    for variant, code in latin:
        if len(words) > len(variant) and words[-len(variant):] == variant:
            return " ".join(words[: -len(variant)]), code
    return " ".join(words) or None, None


@cache
def _stdnum(module: str):
    return importlib.import_module(f"stdnum.{module}")


def check_identifier(value: str | None, modules: tuple[str, ...],
                     patterns: tuple[tuple[str, str], ...] = ()) -> tuple[str | None, str | None, bool]:
    """(compact ID, type, valid) — the first stdnum module whose checks pass decides the type.

    `patterns` (type, regex) accept IDs that have no checksum by their format alone, after the
    stdnum modules: "hrb 230404" -> ("HRB 230404", "de_hr", True).
    """
    value = nfkc(value)
    if value is None:
        return None, None, True
    for module in modules:
        fast = FAST_CHECKS.get(module)
        if fast is not None and value.isascii():
            compact = fast(value)
            if compact is not None:
                return compact, module.replace(".", "_"), True
            continue
        mod = _stdnum(module)
        if mod.is_valid(value):
            return mod.compact(value), module.replace(".", "_"), True
    normalised = " ".join(value.upper().split())
    for kind, pattern in patterns:
        if re.fullmatch(pattern, normalised):
            return normalised, kind, True
    return None, None, False


# --- the same checks as python-stdnum, with its slow parts cached (tests compare both) ----------

@lru_cache(maxsize=100_000)
def _cn_birth_place_known(prefix: str, year: int) -> bool:
    """stdnum's birth place check depends only on the region code and the birth year."""
    from stdnum.cn import ric
    from stdnum.exceptions import ValidationError

    try:
        ric.get_birth_place(f"{prefix}{year:04d}01010000")
    except ValidationError:
        return False
    return True


def _cn_ric(value: str) -> str | None:
    """stdnum.cn.ric.validate for ASCII input: compact number when valid, else None."""
    from stdnum.cn import ric

    number = value.upper().strip()
    if len(number) != 18 or not number[:-1].isdigit() or number[-1] != ric.calc_check_digit(number):
        return None
    try:
        birth = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return number if _cn_birth_place_known(number[:6], birth.year) else None


FAST_CHECKS: dict[str, Callable[[str], str | None]] = {"cn.ric": _cn_ric}
