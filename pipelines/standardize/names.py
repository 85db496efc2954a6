"""Person names: split a full name into given/family, fold for comparison, resolve nicknames.

Handles the orders sources use: "Müller, Thomas" (family first, comma), "WANG Wei" (upper-case
family name), "Wang Wei" / "Wei Wang" from a Chinese record (romanised: the word that is a surname,
the more common one if both are), "Thomas Müller", and
hanzi "王伟" (family from the list of Chinese surnames in schemas/reference, two-character ones
first). Hanzi names get toneless pinyin, with surname readings (单 -> shan).
A mapping may declare the order instead (`given_first`, `family_first`); in `auto` an all-capitals
name without a comma ("MUELLER THOMAS", as passports and some systems write) is read family
first unless its words say otherwise (a known given name first, a known family name last).
`family_name_key` makes a name comparable across romanisations: 陳, Chen and Cantonese Chan all
give "chen" (schemas/reference/cantonese_surnames.yaml, plus the cantonese-romanisation package
for common surnames the table does not list); `pinyin_forms_of_cantonese` does the same for
given names ("Fong" can be 芳 fang). A whole Hong Kong-romanised name in one field ("Lau Yim") is
recognised and split like a pinyin one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

import yaml

from pipelines.settings import SCHEMAS_DIR
from pipelines.standardize.text import fold, has_han, is_all_han, nfkc, pinyin

REFERENCE_DIR = SCHEMAS_DIR / "reference"
SUFFIXES = {"jr": "JR", "jun": "JR", "junior": "JR", "sr": "SR", "sen": "SR", "senior": "SR",
            "ii": "II", "iii": "III", "iv": "IV"}
# "Jun" and "Sen" are also given names (谢军 = Xie Jun): only with their dot are they suffixes.
SUFFIXES_NEEDING_DOT = {"jun", "sen"}
FAMILY_PARTICLES = {"von", "van", "de", "der", "den", "zu", "zum", "zur", "di", "da", "del", "du",
                    "la", "le", "ten", "ter", "vom", "dos", "das", "y"}
TITLES = {"dr", "prof", "herr", "frau", "mr", "mrs", "ms", "miss", "dipl", "ing"}


@dataclass(frozen=True)
class PersonName:
    given: str | None
    family: str | None
    suffix: str | None = None
    script: str = "latin"


@cache
def chinese_surnames() -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(compound surnames, single-character surnames, surname pinyin readings)."""
    ref = yaml.safe_load((REFERENCE_DIR / "chinese_surnames.yaml").read_text(encoding="utf-8"))
    return frozenset(ref["compound"]), frozenset(ref["single"]), dict(ref.get("readings") or {})


@cache
def romanised_surname_rank() -> dict[str, int]:
    """Pinyin surname -> rank by how common it is (0 = "wang"), from the order of the reference
    list; a reading shared by several surnames (cheng: 程, 成) takes the best rank."""
    ref = yaml.safe_load((REFERENCE_DIR / "chinese_surnames.yaml").read_text(encoding="utf-8"))
    _, _, readings = chinese_surnames()
    rank: dict[str, int] = {}
    for i, surname in enumerate([*ref["single"], *ref["compound"]]):
        rank.setdefault(readings.get(surname) or pinyin(surname), i)
    return rank


@cache
def common_chinese_given_names() -> frozenset[str]:
    """Pinyin of common one-character Chinese given names (schemas/reference)."""
    ref = yaml.safe_load((REFERENCE_DIR / "chinese_given_names.yaml").read_text(encoding="utf-8"))
    return frozenset(ref["common_given"])


def romanised_family_first(first: str, last: str) -> bool:
    """Whether a two-part romanised Chinese name "A B" is family-first. Both orders occur
    ("Wang Wei" in Chinese use, "Wei Wang" in Western systems). When both words can be surnames
    ("Zou Li", "Bo Zhang"), a common given name is the given name; else the more common surname
    is the family name."""
    first_key, last_key = fold(first) or "", fold(last) or ""
    first_rank, last_rank = surname_rank(first_key), surname_rank(last_key)
    if first_rank is None:
        return False
    if last_rank is None:
        return True
    given = common_chinese_given_names()
    if (first_key in given) != (last_key in given):
        return last_key in given
    pinyin_rank = romanised_surname_rank()
    if first_key not in pinyin_rank and last_key not in pinyin_rank:
        return True  # Hong Kong romanisation ("Suen Fong"): written surname first, as on an HKID
    return first_rank <= last_rank


def surname_rank(word: str) -> int | None:
    """How common a folded romanised surname is (0 = wang), pinyin or Cantonese ("chan" ranks as
    chen); None when it is no Chinese surname."""
    rank = romanised_surname_rank()
    if word in rank:
        return rank[word]
    ranks = [rank[p] for p in cantonese_surnames().get(word.replace(" ", ""), ()) if p in rank]
    return min(ranks) if ranks else None


def split_hanzi_name(name: str) -> tuple[str | None, str | None]:
    """(family, given) of a hanzi full name: compound surname first, then single-character."""
    name = re.sub(r"[\s·・]", "", name)
    compound, _single, _ = chinese_surnames()
    if len(name) >= 3 and name[:2] in compound:
        return name[:2], name[2:]
    if len(name) == 1:
        return name, None
    # An unlisted first character is still the family name in almost every Chinese name.
    return name[:1], name[1:] or None


def parse_full_name(full: str | None, country: str | None = None,
                    order: str = "auto") -> PersonName:
    """Given/family/suffix of a name written in one field, in whatever order the source uses
    (`order`: auto, or the order the mapping declares: given_first, family_first)."""
    full = nfkc(full)
    if full is None:
        return PersonName(None, None)
    if is_all_han(full):
        family, given = split_hanzi_name(full)
        return PersonName(given, family, None, "han")
    if "," in full:
        family_part, _, given_part = full.partition(",")
        given_tokens, suffix = _strip_suffix(given_part.split())
        family_tokens, suffix2 = _strip_suffix(family_part.split())
        return PersonName(" ".join(given_tokens) or None, " ".join(family_tokens) or None,
                          suffix or suffix2, _script(full))
    tokens = [t for t in full.split() if t.lower().strip(".") not in TITLES] or full.split()
    # Without a comma a name needs two words besides a suffix: "XIE Jun" is given name Jun.
    tokens, suffix = _strip_suffix(tokens, min_kept=2)
    if len(tokens) == 1:
        return PersonName(None, tokens[0], suffix, _script(full))
    if order == "family_first" or (order == "auto" and _all_capitals_family_first(tokens, country)):
        family_end = 1
        while family_end < len(tokens) - 1 and tokens[family_end - 1].lower() in FAMILY_PARTICLES:
            family_end += 1
        family = " ".join(tokens[:family_end])
        given = " ".join(tokens[family_end:])
        if all(_is_upper_word(t) for t in tokens):
            family, given = name_case(family), name_case(given)
        return PersonName(given, family, suffix, _script(full))
    if order == "given_first":
        return _given_first(tokens, suffix, full)
    upper = [t for t in tokens if _is_upper_word(t)]
    if upper and len(upper) < len(tokens):
        # "WANG Wei", "Thomas MÜLLER": the upper-case word is the family name; the capitals
        # only mark it, so it is kept as a name is written ("Wang", "Müller").
        given_words = [t for t in tokens if not _is_upper_word(t)]
        return PersonName(" ".join(given_words), name_case(" ".join(upper)), suffix,
                          _script(full))
    if country == "CN" and romanised_family_first(tokens[0], " ".join(tokens[1:])):
        return PersonName(" ".join(tokens[1:]), tokens[0], suffix, _script(full))
    return _given_first(tokens, suffix, full)


def _given_first(tokens: list[str], suffix: str | None, full: str) -> PersonName:
    family_start = len(tokens) - 1
    while family_start > 1 and tokens[family_start - 1].lower() in FAMILY_PARTICLES:
        family_start -= 1
    given, family = " ".join(tokens[:family_start]), " ".join(tokens[family_start:])
    if all(_is_upper_word(t) for t in tokens):
        given, family = name_case(given), name_case(family)
    return PersonName(given, family, suffix, _script(full))


def _strip_suffix(tokens: list[str], min_kept: int = 1) -> tuple[list[str], str | None]:
    if len(tokens) > min_kept:
        suffix = normalise_suffix(tokens[-1], written_alone=False)
        if suffix is not None:
            return tokens[:-1], suffix
    return tokens, None


def normalise_suffix(text: str | None, written_alone: bool = True) -> str | None:
    """JR / SR / II / III / IV for a suffix as written ("Jr.", "jun.", "Senior"); a suffix column
    (`written_alone`) keeps anything else in capitals, a name word that is no suffix gives None."""
    text = nfkc(text)
    if text is None:
        return None
    key = text.lower().strip(".,")
    if key in SUFFIXES and (written_alone or key not in SUFFIXES_NEEDING_DOT or text.endswith(".")):
        return SUFFIXES[key]
    return text.upper() if written_alone else None


def strip_name_suffix(part: str | None) -> tuple[str | None, str | None]:
    """("Smith", "JR") for a name part written with its suffix ("Smith Jr.", "Müller sen.")."""
    part = nfkc(part)
    if part is None or has_han(part):
        return part, None
    tokens, suffix = _strip_suffix(part.replace(",", " ").split())
    return (" ".join(tokens) if suffix else part), suffix


def name_case(name: str) -> str:
    """A name written in capitals as names are written: "MÜLLER-LÜDENSCHEIDT" ->
    "Müller-Lüdenscheidt", "VON DER HEIDE" -> "von der Heide", "O'BRIEN" -> "O'Brien"."""
    words = name.title().split()
    return " ".join(w.lower() if i < len(words) - 1 and w.lower() in FAMILY_PARTICLES else w
                    for i, w in enumerate(words))


@cache
def known_given_names() -> tuple[frozenset[str], frozenset[str]]:
    """(folded given names, folded family names) of Latin-script locales, from Faker's name lists
    and the nicknames package: evidence for the order of an all-capitals name."""
    import importlib

    given: set[str] = set()
    family: set[str] = set()
    for locale in ("de_DE", "de_AT", "en_US", "en_GB", "fr_FR", "it_IT", "es_ES", "nl_NL", "pl_PL"):
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for name in getattr(provider, "first_names", ()):
            given.add(fold(name) or "")
        for name in getattr(provider, "last_names", ()):
            family.add(fold(name) or "")
    given.update(nickname_table())
    given.update(nickname_table().values())
    return frozenset(given - {""}), frozenset(family - {""})


def _all_capitals_family_first(tokens: list[str], country: str | None) -> bool:
    """Whether an all-capitals name "MUELLER THOMAS" / "WANG MINHONG" is written family first."""
    if len(tokens) < 2 or not all(_is_upper_word(t) for t in tokens):
        return False
    first, last = fold(tokens[0]) or "", fold(tokens[-1]) or ""
    if is_romanised_chinese(tokens):
        return romanised_family_first(tokens[0], " ".join(tokens[1:]))
    given, _family = known_given_names()
    # A known given name first and none last: given first; otherwise the capitals convention.
    return not (first in given and last not in given)


def is_romanised_chinese(tokens: list[str]) -> bool:
    """A Latin name whose words are a Chinese surname and pinyin syllables ("Wang Minhong")."""
    if len(tokens) < 2:
        return False
    folded = [fold(t) or "" for t in tokens]
    if surname_rank(folded[0]) is None and surname_rank(folded[-1]) is None:
        return False
    # pinyin ("Wang Minhong") or Hong Kong romanisation ("Lau Yim", "Chan Tai Man")
    return (all(is_pinyin(word) for word in folded)
            or all(cantonese_syllables(word) is not None for word in folded))


def _chinese_with_western_given(tokens: list[str]) -> bool:
    """"Kang Derek", "Cindy Wang": a Chinese surname at one end, the other words pinyin or known
    given names (a Chinese person who also uses an English given name)."""
    if len(tokens) != 2:
        return False
    folded = [fold(t) or "" for t in tokens]
    western, _ = known_given_names()
    for surname, other in ((folded[0], folded[1]), (folded[1], folded[0])):
        if surname_rank(surname) is not None and (other in western or is_pinyin(other)):
            return True
    return False


@cache
def pinyin_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable (ü as v and u), from pypinyin's character readings."""
    from pypinyin.pinyin_dict import pinyin_dict

    syllables: set[str] = set()
    for readings in pinyin_dict.values():
        for reading in readings.split(","):
            plain = "".join(c for c in unicodedata.normalize("NFD", reading)
                            if not unicodedata.combining(c))
            syllables.add(plain)
            syllables.add(plain.replace("ü", "v"))
            syllables.add(plain.replace("ü", "u"))
    return frozenset(s for s in syllables if s.isascii() and s.isalpha() and s not in ("m", "n", "ng", "hm", "hng"))


@lru_cache(maxsize=100_000)
def is_pinyin(word: str) -> bool:
    """Whether a folded word is one or more pinyin syllables ("minhong", "xiao ming")."""
    word = word.replace(" ", "").replace("-", "").replace("'", "")
    if not word or not word.isalpha() or len(word) > 30:
        return False
    syllables = pinyin_syllables()
    reachable = [True] + [False] * len(word)
    for end in range(1, len(word) + 1):
        reachable[end] = any(reachable[start] and word[start:end] in syllables
                             for start in range(max(0, end - 6), end))
    return reachable[-1]


def given_name_origin(given: str | None) -> str | None:
    """'han' (hanzi), 'pinyin' (all pinyin syllables, not a known Western name), 'western'."""
    given = nfkc(given)
    if given is None:
        return None
    if has_han(given):
        return "han"
    folded = fold(given) or ""
    western, _ = known_given_names()
    words = folded.split()
    if words and all(is_pinyin(w) for w in words) and not any(w in western for w in words):
        return "pinyin"
    return "western"


# the most common surnames of chinese_surnames.yaml (it lists them by frequency) whose Hong Kong
# romanisations are read from the cantonese-romanisation package; rarer ones would make common
# romanisations ("Lee", "Ho") stand for surnames nobody in the data has
CANTONESE_SURNAME_RANKS = 200


@cache
def cantonese_surnames() -> dict[str, tuple[str, ...]]:
    """Folded Hong Kong romanisation -> the pinyin surname readings it stands for: the reviewed
    table (cantonese_surnames.yaml), plus each common surname's romanisations as the
    cantonese-romanisation package gives them (孫 -> "suen" -> sun)."""
    import itertools

    import opencc
    from cantoroman import Cantonese

    ref = yaml.safe_load((REFERENCE_DIR / "cantonese_surnames.yaml").read_text(encoding="utf-8"))
    table: dict[str, set[str]] = {rom: set(by) for rom, by in ref["surnames"].items()}
    surnames = yaml.safe_load((REFERENCE_DIR / "chinese_surnames.yaml").read_text(encoding="utf-8"))
    _, _, readings = chinese_surnames()
    to_traditional = opencc.OpenCC("s2t")
    cantonese = Cantonese()
    for surname in [*surnames["single"][:CANTONESE_SURNAME_RANKS], *surnames["compound"]]:
        reading = readings.get(surname) or "".join(readings.get(c) or pinyin(c) for c in surname)
        per_char = cantonese.getRoman(to_traditional.convert(surname))
        if not all(per_char):
            continue
        for parts in itertools.product(*per_char):
            table.setdefault("".join(parts), set()).add(reading)
    return {rom: tuple(sorted(by)) for rom, by in table.items()}


@lru_cache(maxsize=200_000)
def family_name_key(family: str | None) -> tuple[str, ...] | None:
    """Romanisation-independent keys of a family name: the pinyin surnames it can stand for."""
    norm = family_name_norm(family)
    if norm is None:
        return None
    keys = {norm}
    compact = norm.replace(" ", "")
    cantonese = cantonese_surnames().get(compact)
    if cantonese and not has_han(family):
        keys.update(cantonese)
        if compact not in romanised_surname_rank():
            keys.discard(norm)  # "chan" is no pinyin surname: only what it stands for
    return tuple(sorted(keys))


# --------------------------------------------------------------------------------------------
# Cantonese romanisation of given names
#
# Hong Kong records romanise a name by its Cantonese sound (孫芳: "Suen Fong"), mainland ones by
# Mandarin pinyin ("Sun Fang"). Surnames go through cantonese_surnames.yaml (family_name_key);
# given names are too many for a table, so each Cantonese syllable is read through the
# cantonese-romanisation package (HK Government Romanisation -> characters) and pypinyin
# (characters -> pinyin). Only common characters (GB2312 level 1, the 3,755 in everyday use)
# count: rare characters would make almost any two syllables "equal".

# a given name with more readings than this is not compared by sound (too unspecific)
MAX_PINYIN_FORMS = 512


def _common_hanzi(char: str) -> bool:
    """A simplified character of GB2312 level 1 (the everyday characters names are drawn from)."""
    try:
        code = char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and 0xB0A1 <= int.from_bytes(code, "big") <= 0xD7F9


@cache
def cantonese_syllable_pinyin() -> dict[str, frozenset[str]]:
    """HK Government Romanisation syllable ("fong") -> toneless pinyin of the common characters
    it writes ({fang, feng, huang, ...})."""
    import opencc
    from cantoroman import Cantonese
    from pypinyin import Style
    from pypinyin import pinyin as pinyin_readings

    to_simplified = opencc.OpenCC("t2s")
    table: dict[str, frozenset[str]] = {}
    for syllable, chars in Cantonese().romanToChar.items():
        # one character per line: opencc converts phrases, and these are not one
        simplified = to_simplified.convert("\n".join(chars)).split("\n")
        readings = {reading for char in simplified if len(char) == 1 and _common_hanzi(char)
                    for reading in pinyin_readings(char, style=Style.NORMAL, heteronym=True)[0]}
        # syllabic nasals ("ng", "m") would split pinyin words ("fang" = fa + ng): given names
        # are written with vowelled syllables
        if readings and syllable.isascii() and any(v in syllable for v in "aeiouy"):
            table[syllable] = frozenset(readings)
    return table


def cantonese_syllables(word: str) -> list[str] | None:
    """A folded word split into Cantonese syllables ("chikeung" -> chi, keung); None if it is not
    made of them. The split with the fewest syllables wins ("kaman": ka + man)."""
    table = cantonese_syllable_pinyin()
    if not word.isalpha() or len(word) > 24:
        return None
    best: list[list[str] | None] = [[]] + [None] * len(word)
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - 6), end):
            head = best[start]
            if head is not None and word[start:end] in table:
                candidate = [*head, word[start:end]]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    return best[-1]


@lru_cache(maxsize=200_000)
def pinyin_forms_of_cantonese(given_norm: str | None) -> tuple[str, ...] | None:
    """The pinyin spellings (syllables joined) a Cantonese-romanised given name can stand for:
    "fong" -> (fang, feng, ...), "kwai chi" -> (guizhi, ...). None when the name is not made of
    Cantonese syllables or reads too many ways."""
    if not given_norm:
        return None
    syllables: list[str] = []
    for word in given_norm.split():
        parts = cantonese_syllables(word)
        if parts is None:
            return None
        syllables.extend(parts)
    table = cantonese_syllable_pinyin()
    forms = [""]
    for syllable in syllables:
        readings = sorted(table[syllable])
        if len(forms) * len(readings) > MAX_PINYIN_FORMS:
            return None
        forms = [form + reading for form in forms for reading in readings]
    return tuple(forms) if syllables else None


def split_full_in_family(family: str | None, rule: str, country: str | None = None
                         ) -> PersonName | None:
    """A whole name typed into the family-name field (the given field empty), split; None when
    the value is a family name. `rule`: chinese (hanzi, or a romanised Chinese name), any, off."""
    family = nfkc(family)
    if family is None or rule == "off":
        return None
    if is_all_han(family):
        compact = re.sub(r"[\s·・]", "", family)
        compound, single, _ = chinese_surnames()
        if len(compact) < 2 or compact in compound:
            return None
        surname, given = split_hanzi_name(compact)
        return PersonName(given, surname, None, "han") if given else None
    tokens = family.replace(",", " ").split()
    if len(tokens) < 2:
        return None
    if rule == "chinese" and not (is_romanised_chinese(tokens) or _chinese_with_western_given(tokens)):
        return None
    parsed = parse_full_name(family, country or ("CN" if rule == "chinese" else None))
    return parsed if parsed.given else None


def _is_upper_word(token: str) -> bool:
    letters = [c for c in token if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _script(text: str) -> str:
    return "han" if has_han(text) else "latin"


def name_script(*parts: str | None) -> str:
    return "han" if any(has_han(p) for p in parts if p) else "latin"


@lru_cache(maxsize=200_000)
def family_name_norm(family: str | None) -> str | None:
    """Folded family name; hanzi surnames with their surname reading (单 -> shan)."""
    family = nfkc(family)
    if family is None:
        return None
    if is_all_han(family):
        _, _, readings = chinese_surnames()
        compact = re.sub(r"[\s·・]", "", family)
        if compact in readings:
            return readings[compact]
        if len(compact) == 2 and all(c in readings for c in compact):
            return readings[compact[0]] + readings[compact[1]]
        if compact[:1] in readings:
            return readings[compact[:1]] + (pinyin(compact[1:]) if len(compact) > 1 else "")
    return fold(family)


def given_name_norm(given: str | None) -> str | None:
    """Folded given name (hanzi as joined toneless pinyin: 伟明 -> weiming)."""
    return fold(given)


# --------------------------------------------------------------------------------------------
# Nicknames


@cache
def nickname_table() -> dict[str, str]:
    """Folded given name -> canonical given name, from the `nicknames` package plus overrides.

    A name with nicknames of its own (peter, maria) is canonical itself. A pure nickname maps to
    one of its long forms, chosen deterministically: most nicknames, then longest, then
    alphabetical; schemas/reference/nicknames.yaml overrides. Chains end at a fixed point, so
    the table is idempotent (the canonical of a canonical is itself).
    """
    from nicknames import NickNamer

    namer = NickNamer()
    nicknames_of = namer.nickname_lookup
    canonicals_of = namer.canonical_lookup

    def rank(name: str) -> tuple[int, int, str]:
        return (-len(nicknames_of.get(name, ())), -len(name), name)

    first: dict[str, str] = {}
    for name, candidates in canonicals_of.items():
        if nicknames_of.get(name):
            continue
        best = min([*candidates, name], key=rank)
        if best != name:
            first[name] = best
    overrides = yaml.safe_load((REFERENCE_DIR / "nicknames.yaml").read_text(encoding="utf-8"))
    first.update(overrides.get("overrides") or {})
    for target in set((overrides.get("overrides") or {}).values()):
        first.pop(target, None)  # an override's target is canonical itself
    for name, canonical in list(first.items()):
        if canonical == name:
            del first[name]

    table: dict[str, str] = {}
    for name in first:
        seen = [name]
        current = name
        while current in first and first[current] not in seen:
            current = first[current]
            seen.append(current)
        table[name] = current
    # A canonical name maps to itself: where a chain ended in a cycle, its end stays canonical.
    for target in set(table.values()):
        table.pop(target, None)
    return table


def canonical_given_name(given_norm: str | None) -> str | None:
    """Given name with its nickname resolved ("bill" -> "william"); compound names as they are."""
    if not given_norm:
        return given_norm
    return nickname_table().get(given_norm, given_norm)
