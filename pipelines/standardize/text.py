"""Text folding shared by every standardizer: the comparison form of names, streets and cities.

`fold` gives lower-case ASCII words: Unicode NFKC, German umlauts spelled out (ü -> ue, ß -> ss),
hanzi as toneless pinyin (one word per run of hanzi), other scripts transliterated (anyascii),
punctuation to single spaces. It is idempotent, and its output is only [a-z0-9 ].
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from anyascii import anyascii
from pypinyin import Style, lazy_pinyin

GERMAN_SPELLING = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe",
                                 "Ü": "Ue", "ẞ": "SS"})
HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]+")
NOT_WORD = re.compile(r"[^a-z0-9]+")
APOSTROPHES = re.compile(r"['`\u2019\u02bc]")


def nfkc(text: str | None) -> str | None:
    """Unicode NFKC with whitespace collapsed; None for blank."""
    if text is None:
        return None
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text or None


def has_han(text: str | None) -> bool:
    return bool(text) and HAN_RUN.search(text or "") is not None


def is_all_han(text: str) -> bool:
    """True when the text (spaces and middle dots aside) is hanzi only."""
    stripped = re.sub(r"[\s·・]", "", text)
    return bool(stripped) and HAN_RUN.fullmatch(stripped) is not None


def pinyin(han: str) -> str:
    """Toneless pinyin of a run of hanzi, syllables joined ("北京" -> "beijing").

    Rare characters pypinyin has no reading for are transliterated by anyascii rather than
    dropped, so a name never loses a syllable ("瓼" -> "lei")."""
    return "".join(lazy_pinyin(han, style=Style.NORMAL,
                               errors=lambda chars: anyascii(chars).lower()))


@lru_cache(maxsize=200_000)
def fold(text: str | None) -> str | None:
    """Comparison form: lower-case ASCII words separated by single spaces; None for blank."""
    text = nfkc(text)
    if text is None:
        return None
    text = text.translate(GERMAN_SPELLING)
    if has_han(text):
        text = HAN_RUN.sub(lambda m: f" {pinyin(m.group())} ", text)
    # apostrophes join: "Xi'an" is the city hanzi 西安 folds to (xian), "O'Brien" is obrien
    folded = NOT_WORD.sub(" ", APOSTROPHES.sub("", anyascii(text)).lower()).strip()
    return folded or None
