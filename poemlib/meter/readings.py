"""Character readings: 平水韵 tones and rhyme groups (pingshui mode) or modern Mandarin (中华新韵, xinyun mode)."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from poemlib.meter.charforms import is_han as _is_han
from poemlib.meter.charforms import (
    opencc_tables,
    to_simplified,
    traditional_candidates,
    traditional_forms,
)
from poemlib.meter.charforms import package_dir as _package_dir
from poemlib.meter.pingshui import is_ping_group, pingshui_table

__all__ = ["MODES", "TONE_MARK", "Reading", "line_readings", "line_tones", "lines_marks", "lines_tones", "pingshui_groups", "pingshui_table", "reading", "to_simplified", "traditional_candidates", "uncertain_chars"]

Mode = Literal["pingshui", "xinyun"]
MODES: tuple[str, ...] = ("pingshui", "xinyun")

# Tones are bit sets so that "either" is simply both bits and compatibility is a bitwise and.
UNKNOWN, PING, ZE = 0, 1, 2
EITHER = PING | ZE
TONE_MARK = {PING: "平", ZE: "仄", EITHER: "either", UNKNOWN: "unknown"}


@dataclass(frozen=True, slots=True)
class Reading:
    """What the engine knows about one character in one mode."""

    tone: int  # bit set of PING / ZE; UNKNOWN when nothing is known
    groups: frozenset[str]  # rhyme groups of the character's 平声 readings
    uncertain: bool  # True when the reading fell back to modern Mandarin


def compatible(tone: int, wanted: int) -> bool:
    """True when a character's tone can satisfy the wanted tone (unknown and either always can)."""
    return tone == UNKNOWN or bool(tone & wanted)


def definitely(tone: int, wanted: int) -> bool:
    """True when the character can only be read with the wanted tone."""
    return tone == wanted


def group_short(group: str) -> str:
    """The rhyme word of a group name: 上平声十灰 → 灰, 新韵五微 → 微."""
    return group[-1]


# ---------------------------------------------------------------------------
# Modern Mandarin (pypinyin): fallback in pingshui mode, the whole story in xinyun mode
# ---------------------------------------------------------------------------

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c", "s")
_Y_W = {
    "yi": "i", "ya": "ia", "ye": "ie", "yao": "iao", "you": "iou", "yan": "ian", "yin": "in", "yang": "iang",
    "ying": "ing", "yong": "iong", "yo": "o", "yu": "v", "yue": "ve", "yuan": "van", "yun": "vn", "wu": "u",
    "wa": "ua", "wo": "uo", "wai": "uai", "wei": "uei", "wan": "uan", "wen": "uen", "wang": "uang", "weng": "ueng",
}
# 中华新韵 (十四韵) by final; -i after zh ch sh r z c s is 十三支, other i is 十二齐.
_XINYUN_BY_FINAL = {
    "a": "一麻", "ia": "一麻", "ua": "一麻",
    "o": "二波", "uo": "二波", "e": "二波",
    "ie": "三皆", "ve": "三皆", "ue": "三皆", "ê": "三皆",
    "ai": "四开", "uai": "四开",
    "ei": "五微", "ui": "五微", "uei": "五微",
    "ao": "六豪", "iao": "六豪",
    "ou": "七尤", "iu": "七尤", "iou": "七尤",
    "an": "八寒", "ian": "八寒", "uan": "八寒", "van": "八寒",
    "en": "九文", "in": "九文", "un": "九文", "uen": "九文", "vn": "九文",
    "ang": "十唐", "iang": "十唐", "uang": "十唐",
    "eng": "十一庚", "ing": "十一庚", "ong": "十一庚", "iong": "十一庚", "ueng": "十一庚",
    "i": "十二齐", "v": "十二齐", "er": "十二齐",
    "-i": "十三支",
    "u": "十四姑",
}
XINYUN_GROUPS: tuple[str, ...] = tuple(dict.fromkeys(f"新韵{g}" for g in _XINYUN_BY_FINAL.values()))


def xinyun_group(syllable: str) -> str | None:
    """中华新韵 group of a toneless pinyin syllable ('lv', 'zhi', 'yue'), or None when it cannot be parsed."""
    syllable = syllable.replace("ü", "v")
    if syllable in _Y_W:
        final = _Y_W[syllable]
    elif syllable[:1] in ("y", "w"):
        return None
    else:
        final = syllable
        for initial in _INITIALS:
            if syllable.startswith(initial) and len(syllable) > len(initial):
                final = syllable[len(initial):]
                if final == "i" and initial in ("zh", "ch", "sh", "r", "z", "c", "s"):
                    final = "-i"
                elif final.startswith("u") and initial in ("j", "q", "x"):
                    final = "v" + final[1:]
                break
    group = _XINYUN_BY_FINAL.get(final)
    return f"新韵{group}" if group else None


# pypinyin's package import loads its phrase dictionary and segmenter (~0.5 s per process); single characters
# only need its character table, a JSON file read here directly in ~0.02 s.
_COMBINING_TONES = {"\u0304": 1, "\u0301": 2, "\u030c": 3, "\u0300": 4}


@lru_cache(maxsize=1)
def _pinyin_table() -> dict[str, str]:
    """pypinyin's character table: str(code point) → 'xié,xiá,…' (tone-marked readings, everyday one first)."""
    path = _package_dir("pypinyin") / "pinyin_dict.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _numbered(marked: str) -> tuple[str, int] | None:
    """'lǜ' → ('lv', 4); a reading without a tone mark is neutral (5)."""
    tone, letters = 5, []
    for c in unicodedata.normalize("NFD", marked.strip()):
        if c in _COMBINING_TONES:
            tone = _COMBINING_TONES[c]
        elif c == "\u0308" and letters and letters[-1] == "u":  # ü
            letters[-1] = "v"
        elif c.isascii() and c.isalpha():
            letters.append(c.lower())
    return ("".join(letters), tone) if letters else None


@cache
def _char_readings(ch: str) -> tuple[tuple[str, int], ...]:
    """Modern readings of one character as (toneless syllable, tone 1-5), everyday reading first."""
    marked = _pinyin_table().get(str(ord(ch)), "")
    return tuple(dict.fromkeys(r for item in marked.split(",") if item and (r := _numbered(item))))


@cache
def modern_syllables(ch: str) -> tuple[tuple[str, int], ...]:
    """All modern readings of a character (or, failing that, of its other forms); empty when pypinyin has none."""
    for cand in traditional_candidates(ch):
        found = _char_readings(cand)
        if found:
            return found
    return ()


def _modern_tone(syllables: tuple[tuple[str, int], ...]) -> int:
    """平 for tones 1/2, 仄 for 3/4; neutral tones say nothing."""
    tone = UNKNOWN
    for _, number in syllables:
        if number in (1, 2):
            tone |= PING
        elif number in (3, 4):
            tone |= ZE
    return tone


# ---------------------------------------------------------------------------
# Readings per mode, cached per character (the hot path of the engine)
# ---------------------------------------------------------------------------


@cache
def pingshui_groups(ch: str) -> frozenset[str]:
    """平水韵 groups of a character's own readings; never another character's that merely shares its simplified form.

    A character in the table keeps its own groups (畫 does not get 划's 麻, 暗 not 闇's 覃). A simplified character
    also writes its traditional forms, so it takes their groups of a tone class (平/仄) it has itself in the table or
    in its everyday Mandarin reading when the form shares it (干 gàn = 幹 gàn: 幹's 翰; 征 zhēng, not 徵 zhǐ: 徵's
    蒸 but not its 纸; 泛 fàn: not 汎's 东). A character missing from the table borrows from its other forms, then
    from its variants.
    """
    table = pingshui_table()
    own = table.get(ch)
    if own:
        forms = traditional_forms(ch)
        if not forms:
            return own
        own_classes = UNKNOWN
        for group in own:
            own_classes |= PING if is_ping_group(group) else ZE
        everyday = _char_readings(ch)[:1]
        extra: set[str] = set()
        for form in forms:
            shared = everyday if everyday and everyday[0] in _char_readings(form) else ()
            classes = own_classes | _modern_tone(shared)
            extra.update(g for g in table.get(form, ()) if classes & (PING if is_ping_group(g) else ZE))
        return own | frozenset(extra)
    cands = traditional_candidates(ch)
    groups: set[str] = set()
    for cand in cands:
        groups |= table.get(cand, frozenset())
    if not groups:
        variants = opencc_tables()[2]
        for cand in cands:
            for variant in variants.get(cand, ()):
                groups |= table.get(variant, frozenset())
    return frozenset(groups)


@cache
def pingshui_reading(ch: str) -> Reading:
    """平水韵 reading of the character's own groups; modern Mandarin (marked uncertain) when it has none."""
    groups = pingshui_groups(ch)
    if groups:
        ping = any(is_ping_group(g) for g in groups)
        tone = (PING if ping else 0) | (ZE if not all(is_ping_group(g) for g in groups) else 0)
        return Reading(tone, frozenset(g for g in groups if is_ping_group(g)), False)
    if not _is_han(ch):
        return Reading(UNKNOWN, frozenset(), False)
    return Reading(_modern_tone(modern_syllables(ch)), frozenset(), True)


# Pre-modern readings pypinyin lists among a character's heteronyms; 中华新韵 must not rhyme with them
# (斜 xiá is exactly the rhyme Mandarin lost: 杜牧《山行》 rhymes in 平水韵, not in 新韵).
_ARCHAIC = {"斜": ("xia", "cha", "ye"), "衰": ("cui", "suo"), "家": ("gu", "jie"), "还": ("fu",), "骑": ("ji",)}


def modern_default(ch: str) -> tuple[str, int] | None:
    """The everyday modern reading of a character (pypinyin's first choice), or None."""
    found = _char_readings(ch)
    return found[0] if found else None


@cache
def xinyun_reading(ch: str) -> Reading:
    """Modern reading: tones 1/2 平, 3/4 仄 from the everyday reading; rhyme groups of its 平 readings by 中华新韵 final.

    pypinyin's heteronym lists carry many rare readings (金 jìn, 年 nìng), so a second tone only counts
    for characters that are polyphonic in 平水韵 too (看, 过, 思); rhyme groups take every non-archaic 平 reading.
    """
    if not _is_han(ch):
        return Reading(UNKNOWN, frozenset(), False)
    ch = to_simplified(ch)  # pypinyin knows simplified forms best; both scripts then get the same verdict
    archaic = _ARCHAIC.get(ch, ())
    syllables = tuple(s for s in modern_syllables(ch) if s[0] not in archaic)
    default = modern_default(ch)
    tone = _modern_tone((default,)) if default else _modern_tone(syllables)
    if pingshui_reading(ch).tone == EITHER:
        tone |= _modern_tone(syllables)
    groups = frozenset(g for s, n in syllables if n in (1, 2) and (g := xinyun_group(s)))
    return Reading(tone, groups, False)


# Plain dicts in front of the lru_caches: the engine looks up every character of every poem, and a dict
# lookup is several times cheaper than an lru_cache call. The tone and mark of each character are kept in
# dicts of their own so that a whole line is read with one C-level map (10,000 poems check in about a second).
_CACHES: dict[str, dict[str, Reading]] = {"pingshui": {}, "xinyun": {}}
_TONES: dict[str, dict[str, int]] = {"pingshui": {}, "xinyun": {}}
_UNCERTAIN: dict[str, set[str]] = {"pingshui": set(), "xinyun": set()}


def reading(ch: str, mode: str = "pingshui") -> Reading:
    """Reading of one character in the given mode."""
    cache = _CACHES[mode]
    found = cache.get(ch)
    if found is None:
        found = cache[ch] = pingshui_reading(ch) if mode == "pingshui" else xinyun_reading(ch)
        _TONES[mode][ch] = found.tone
        if found.uncertain:
            _UNCERTAIN[mode].add(ch)
    return found


def line_readings(line: str, mode: str = "pingshui") -> list[Reading]:
    """Readings of every character of a line."""
    cache = _CACHES[mode]
    get = cache.get
    return [get(ch) or reading(ch, mode) for ch in line]


def _read_all(text: str, mode: str) -> None:
    """Fill the per-character caches for every character of a text."""
    cache = _CACHES[mode]
    for ch in text:
        if ch not in cache:
            reading(ch, mode)


# Whole lines repeat across a corpus (clean's records recombine known lines; famous lines recur), so the tones
# of a line are kept per line string too; bounded, cleared when full.
_LINE_TONES: dict[str, dict[str, tuple[int, ...]]] = {"pingshui": {}, "xinyun": {}}
_LINE_CACHE_SIZE = 1 << 16
# A line's marks follow from its tones alone, and tone shapes repeat far more than lines (2^7 common 7-character ones).
_MARKS_OF_TONES: dict[tuple[int, ...], tuple[str, ...]] = {}


def _per_char(table: dict[str, Any], line: str, mode: str) -> tuple[Any, ...]:
    """The table's value for every character of a line, reading characters not seen before."""
    try:
        return tuple(map(table.__getitem__, line))
    except KeyError:
        _read_all(line, mode)
        return tuple(map(table.__getitem__, line))


def line_tones(line: str, mode: str = "pingshui") -> tuple[int, ...]:
    """The tone bits of every character of a line."""
    cache = _LINE_TONES[mode]
    found = cache.get(line)
    if found is None:
        if len(cache) >= _LINE_CACHE_SIZE:
            cache.clear()
        found = cache[line] = _per_char(_TONES[mode], line, mode)
    return found


def lines_tones(lines: list[str], mode: str = "pingshui") -> list[tuple[int, ...]]:
    """The tone bits of every character of each line (one loop: a poem asks for all its lines at once)."""
    get = _LINE_TONES[mode].get
    out = []
    for line in lines:
        found = get(line)
        out.append(line_tones(line, mode) if found is None else found)
    return out


def lines_marks(lines: list[str], mode: str = "pingshui") -> list[list[str]]:
    """The report marks of every character of each line (fresh lists)."""
    get = _MARKS_OF_TONES.get
    out = []
    for tones in lines_tones(lines, mode):
        found = get(tones)
        out.append(list(_marks_of(tones) if found is None else found))
    return out


def _marks_of(tones: tuple[int, ...]) -> tuple[str, ...]:
    """The marks of a tone shape (cached)."""
    if len(_MARKS_OF_TONES) >= _LINE_CACHE_SIZE:
        _MARKS_OF_TONES.clear()
    found = _MARKS_OF_TONES[tones] = tuple(map(TONE_MARK.__getitem__, tones))
    return found


def uncertain_chars(lines: list[str], mode: str = "pingshui") -> list[str]:
    """Characters of the lines read by modern Mandarin fallback, in order of first appearance (lines already read)."""
    uncertain = _UNCERTAIN[mode]
    text = "".join(lines)
    found = uncertain.intersection(text)
    return sorted(found, key=text.index) if found else []


# 邻韵 (neighbouring groups) a rhyming first line may borrow from.
_PINGSHUI_NEIGHBOURS = ("东冬", "江阳", "支微齐", "鱼虞", "佳灰", "真文元", "元寒删先", "萧肴豪", "庚青蒸", "覃盐咸")
_XINYUN_NEIGHBOURS = ("支齐",)


@cache
def neighbours(group: str, mode: str = "pingshui") -> frozenset[str]:
    """Short names of the groups neighbouring a group (excluding itself)."""
    short = group_short(group)
    sets = _PINGSHUI_NEIGHBOURS if mode == "pingshui" else _XINYUN_NEIGHBOURS
    return frozenset(c for s in sets if short in s for c in s if c != short)

