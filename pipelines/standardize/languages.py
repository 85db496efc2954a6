"""Languages: a code or a language's name in any of the common CLDR languages -> ISO 639-1.

"de", "DE-de", "de_AT", "deu", "ger", "German", "Deutsch", "allemand", "德语" all give "de" (Babel's
CLDR data: language names per locale, and its ISO 639-2/3 aliases); None when unknown.
"""

from __future__ import annotations

from functools import cache

from pipelines.standardize.text import nfkc

NAME_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "cs", "da", "sv", "nb", "fi",
                "tr", "ru", "zh", "zh_Hant", "ja", "ko", "ar")


def _key(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


@cache
def language_names() -> dict[str, str]:
    """Comparison form of a language code or name -> ISO 639-1 code."""
    from babel import Locale
    from babel.core import get_global

    english = Locale.parse("en").languages
    two_letter = {str(code) for code in english if len(str(code)) == 2 and str(code).isalpha()}
    lookup: dict[str, str] = {code: code for code in two_letter}
    for alias, target in get_global("language_aliases").items():
        base = str(target).split("_")[0]
        if base in two_letter and alias.isalpha() and len(alias) == 3:
            lookup.setdefault(alias, base)
    for locale in NAME_LOCALES:
        for code, name in Locale.parse(locale).languages.items():
            if str(code) in two_letter:
                lookup.setdefault(_key(str(name)), str(code))
    return lookup


def normalise_language(text: str | None) -> str | None:
    """ISO 639-1 code of a language written as a code (de, de-AT, deu, ger) or name; None if unknown."""
    text = nfkc(text)
    if text is None:
        return None
    table = language_names()
    key = _key(text)
    if key in table:
        return table[key]
    head = text.replace("-", "_").split("_")[0].casefold()
    return table.get(head) if head.isalpha() and len(head) in (2, 3) else None
