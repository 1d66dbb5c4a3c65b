"""词 体 compiled to the engine's FormFamily: one 句 per line (the 谱's 句 ends, and any rhyme position), per-position
平仄 from the pattern (中 free), one rhyme set per rhyme group of the 体 in a 词林正韵 部 (平 or 仄 per the pattern at
each rhyme position; 上 and 去 share the 仄 key), `。` at rhyme-unit ends and `，` elsewhere, a blank line at the
片 breaks: the layout of our training targets, which `poemlib.meter.check` reads back as this 体."""

from __future__ import annotations

from functools import lru_cache

from poemlib.constrain.form import (
    ALLOW_ANY,
    ALLOW_PING,
    ALLOW_ZE,
    FormFamily,
    FormSpec,
    LineSpec,
    RhymeSet,
)
from poemlib.meter.ci_data import Variant, closest_names, load_cipai, parse_cipai
from poemlib.meter.cilin import CILIN_PARTS

_TONES = {"平": ALLOW_PING, "仄": ALLOW_ZE, "中": ALLOW_ANY}
_SUFFIX = {"平": "平", "仄": "仄", "中": ""}


def canonical_cipai(name: str) -> str:
    """The canonical 词牌 a name or alias stands for; ValueError naming the closest known names otherwise."""
    found = parse_cipai(name)
    if found is None:
        raise ValueError(f"unknown 词牌 {name!r} (closest known: {', '.join(closest_names(name)) or 'none'})")
    return found


def constrained_variant(cipai: str) -> Variant:
    """The 体 a constrained 词 follows: the 正体 (first listed), which the checker also picks among 体 of its length
    when a text fits several (ties keep the earlier 体)."""
    return load_cipai()[canonical_cipai(cipai)].variants[0]


def _line_ends(v: Variant) -> list[int]:
    """Where the lines end: every 句 end, and every rhyme position (a rhyme always closes a line)."""
    rhymes = {abs(p) + 1 for group in v.rhymes for p in group}
    stray = sorted(p for p in rhymes if p not in v.ends)
    if stray:
        raise ValueError(f"{v.name}: rhyme positions {stray} fall inside a 句 of the 谱; the engine rhymes line ends only")
    return sorted(set(v.line_ends) | rhymes)


def _check_shape(v: Variant, cipai: str) -> None:
    """Reject 体 whose 片 breaks the layout cannot write where the checker expects them."""
    if not v.pattern or set(v.pattern) - set(_TONES):
        raise ValueError(f"{cipai}{v.name}: pattern {v.pattern!r} is not 平/仄/中 per character")
    for pos in v.pian_breaks:
        if pos not in v.unit_ends or pos >= v.chars:
            raise ValueError(f"{cipai}{v.name}: the 片 break after character {pos} is not at a rhyme-unit end")


@lru_cache(maxsize=1024)
def ci_family(cipai: str) -> FormFamily:
    """The FormFamily of a 词牌's constrained 体, with title head `词牌·`."""
    name = canonical_cipai(cipai)
    v = constrained_variant(name)
    _check_shape(v, name)
    rhyme_at = {abs(p): index for index, group in enumerate(v.rhymes) for p in group}
    units, breaks = set(v.unit_ends), set(v.pian_breaks)
    lines, start = [], 0
    for end in _line_ends(v):
        rset = rhyme_at.get(end - 1)
        lines.append(LineSpec(
            tones=tuple(_TONES[c] for c in v.pattern[start:end]),
            rhyme=rset,
            punct="。" if end in units or end == v.chars else "，",
            stanza_end=end in breaks,
            rhyme_suffix=_SUFFIX[v.pattern[end - 1]] if rset is not None else "",
        ))
        start = end
    groups = frozenset(CILIN_PARTS)
    return FormFamily("词", f"{name}·", (FormSpec(f"{name}·{v.name}", tuple(lines)),), tuple(RhymeSet(groups) for _ in v.rhymes))
