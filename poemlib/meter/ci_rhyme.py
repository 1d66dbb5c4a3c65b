"""词林正韵 for the 词 checker: the 部 a rhyme character belongs to (from `poemlib.meter.cilin.cilin_parts`);
in xinyun mode the 中华新韵 groups of its modern readings instead.

词林正韵 splits ten 平水韵 groups between two 部 (灰贿队泰 3/5, 佳蟹卦 5/10, 元阮愿 6/7); Song poets often still
rhymed such a group whole (晏殊《浣溪沙》 杯 台 回 来 徘), so two characters of one split 平水韵 group rhyme with a
note rather than a fault. Neighbouring 入声 部 likewise (苏轼《念奴娇》 壁 among 物 雪 杰 发 灭 月).
"""

from __future__ import annotations

from functools import cache

from poemlib.meter.cilin import CILIN_PARTS, RUSHENG_PARTS, cilin_parts
from poemlib.meter.readings import (
    XINYUN_GROUPS,
    group_short,
    modern_syllables,
    pingshui_groups,
    xinyun_group,
)

RUSHENG_BU = RUSHENG_PARTS
# Rhyme words of the 平水韵 groups 词林正韵 splits between two 部.
_SPLIT_WORDS = frozenset("灰贿队泰佳蟹卦元阮愿")


# In xinyun mode a 词 rhymes by 中华新韵: its groups are numbered from here so they never meet a 部 number.
_XINYUN_BASE = 100


@cache
def _xinyun_bu(ch: str) -> frozenset[int]:
    """中华新韵 groups (numbered from _XINYUN_BASE) of every modern reading of a character, any tone."""
    groups = {xinyun_group(syllable) for syllable, tone in modern_syllables(ch) if tone in (1, 2, 3, 4)}
    return frozenset(_XINYUN_BASE + XINYUN_GROUPS.index(g) for g in groups if g)


@cache
def _pingshui_bu(ch: str) -> frozenset[int]:
    """The 词林正韵 部 (1-19) a character can rhyme in, whatever the tone; empty when the tables do not know it."""
    return frozenset(bu for bu, _ in cilin_parts(ch))


def rhyme_bu(ch: str, mode: str = "pingshui") -> frozenset[int]:
    """The rhyme groups of a character for a 词: 词林正韵 部 (pingshui) or 中华新韵 groups (xinyun)."""
    return _xinyun_bu(ch) if mode == "xinyun" else _pingshui_bu(ch)


@cache
def split_groups(ch: str) -> frozenset[str]:
    """The character's 平水韵 groups that 词林正韵 splits (上平声十灰 …)."""
    return frozenset(g for g in pingshui_groups(ch) if group_short(g) in _SPLIT_WORDS)


def bu_name(bu: int) -> str:
    """'第七部' for 7; the 中华新韵 group's name for a xinyun number."""
    return XINYUN_GROUPS[bu - _XINYUN_BASE] if bu >= _XINYUN_BASE else CILIN_PARTS[bu - 1]
