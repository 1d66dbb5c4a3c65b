"""Checking a 词 against its 词牌: choose the 体 that fits best, then 句 structure, per-position 平仄 and rhyme.

A 体 fits when it has as many characters as the text (length first); among those the one with fewest broken
句 ends, then fewest 平仄 and rhyme faults, is used. 平仄: 平 and 仄 in the 谱 must be met (中 = either; a
character the tables read both ways always passes, as for 近体). Rhyme: the characters of each of the 谱's rhyme
groups share one 词林正韵 部 (换韵 = a new group; 上 and 去 rhyme together; 平 or 仄 comes from the pattern).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

from poemlib.meter.ci_data import Variant, chinese_number, load_cipai
from poemlib.meter.ci_rhyme import RUSHENG_BU, bu_name, rhyme_bu, split_groups
from poemlib.meter.readings import line_readings
from poemlib.meter.report import Violation, violation
from poemlib.meter.text import Segment

_PIAN_WINDOW = 0.15  # a written stanza break may sit this share of the length away from where the 片 should end


@dataclass(frozen=True)
class _Written:
    """The text of a 词 as one run of characters, with where and how the writer broke it."""

    text: str
    breaks: dict[int, str]  # offset → 'stanza' | 'line' | 'pause' (、) | 'soft' (a space)
    n_stanzas: int
    segment_ends: tuple[int, ...]
    line_breaks: tuple[int, ...]  # offsets of 'line' and 'stanza' breaks, in order
    stanza_breaks: tuple[int, ...]  # offsets of 'stanza' breaks, in order


def _written(stanzas: list[list[Segment]]) -> _Written:
    """All characters of the 词 and the offsets of its breaks."""
    breaks: dict[int, str] = {}
    text, pos, ends = [], 0, []
    for number, stanza in enumerate(stanzas):
        for index, seg in enumerate(stanza):
            for off in seg.soft_breaks:
                breaks[pos + off] = "soft"
            text.append(seg.text)
            pos += len(seg.text)
            ends.append(pos)
            last = index == len(stanza) - 1
            breaks[pos] = "stanza" if last and number < len(stanzas) - 1 else ("pause" if seg.pause and not last else "line")
    breaks.pop(pos, None)
    ordered = sorted(breaks.items())
    line_breaks = tuple(p for p, kind in ordered if kind in ("line", "stanza"))
    stanza_breaks = tuple(p for p, kind in ordered if kind == "stanza")
    return _Written("".join(text), breaks, len(stanzas), tuple(ends), line_breaks, stanza_breaks)


@dataclass
class CiResult:
    """What the 词 check found, merged into the MeterReport by the caller."""

    form_ok: bool | None
    variant: str | None
    violations: list[Violation]
    notes: list[str]
    tone_ok: bool | None = None
    rhyme_ok: bool | None = None
    lines: list[str] = field(default_factory=list)
    template_lines: list[str] = field(default_factory=list)
    rhyme_group: str | None = None
    rhyme_chars: list[str] = field(default_factory=list)
    rhyme_positions: list[tuple[int, int]] = field(default_factory=list)  # 0-based (line, position) of the 谱's rhymes


# ---------------------------------------------------------------------------
# Faults against one 体, located by character offset (turned into line/position at the end)
# ---------------------------------------------------------------------------

_Fault = tuple[str, str, int | None, str]  # category, rule, offset (or None), message


def _form_faults(w: _Written, v: Variant) -> tuple[list[_Fault], list[_Fault]]:
    """Faults of the 句 structure: (hard, soft).

    Hard: the text runs through the end of a rhyme unit (韵/叶/叠), or its 片 are split elsewhere. Soft: 句读 inside a
    rhyme unit differ from the 谱 (驾长车，踏破贺兰山缺 for 驾长车踏破，贺兰山缺): editions and 谱 differ there.
    """
    hard: list[_Fault] = []
    soft: list[_Fault] = []
    ends = v.ends
    for pos in w.line_breaks:
        if pos not in ends:
            soft.append(("form", "句读", pos - 1, f"a break after character {pos}, inside a 句 of the 谱"))
    chars, breaks = v.chars, w.breaks
    for pos, mark in ends.items():
        if pos < chars and pos not in breaks and mark != "读":
            unit = mark in "韵叶叠"
            fault = ("form", "词牌句式", pos - 1, f"the 谱 ends a {'rhyme unit' if unit else '句'} here; the text runs on")
            (hard if unit else soft).append(fault)
    if w.n_stanzas > 1:
        written = w.stanza_breaks
        if w.n_stanzas != v.pian:
            hard.append(("form", "分片", None, f"{w.n_stanzas} stanzas written, the 体 has {v.pian} 片"))
        else:
            window = _PIAN_WINDOW * v.chars
            for pos, expected in zip(written, v.pian_breaks):
                if pos not in v.unit_ends or abs(pos - expected) > window:
                    hard.append(("form", "分片", None, f"a stanza break after character {pos}; the 片 ends after character {expected}"))
    return hard, soft


def _tone_faults(tones: list[int], v: Variant) -> list[_Fault]:
    """Characters whose only tone is the opposite of the 谱's 平 or 仄."""
    return [fault for pos, opposite, fault in v.strict_faults if tones[pos] == opposite]


def _rhyme_faults(text: str, v: Variant, mode: str = "pingshui") -> tuple[list[_Fault], list[str], list[str]]:
    """出韵 per rhyme group (one 词林正韵 部, or 中华新韵 group, each), the groups used, and notes (accepted licences)."""
    out: list[_Fault] = []
    used, notes = [], []
    for group in v.rhymes:
        positions = [abs(p) for p in group]
        parts = [rhyme_bu(text[pos], mode) for pos in positions]
        common = frozenset.intersection(*parts)
        if common:  # the usual case: every rhyme shares a 部
            used.append(bu_name(min(common)))
            continue
        counts = Counter(bu for found in parts for bu in found)
        if not counts:
            continue
        first = {bu: i for i, found in reversed(list(enumerate(parts))) for bu in found}
        bu = max(counts, key=lambda b: (counts[b], -first[b], -b))
        used.append(bu_name(bu))
        in_bu = [text[p] for p, found in zip(positions, parts) if bu in found]
        shared = frozenset().union(*map(split_groups, in_bu)) if mode == "pingshui" else frozenset()
        for pos, found in zip(positions, parts):
            ch = text[pos]
            if bu in found:
                continue
            have = "、".join(bu_name(b) for b in sorted(found))
            if not found:
                notes.append(f"韵脚「{ch}」不在韵表中，未判断是否出韵")
            elif split_groups(ch) & shared:
                notes.append(f"「{ch}」属{have}，与{bu_name(bu)}同出平水韵{'、'.join(sorted(split_groups(ch) & shared))}，宋词多合用")
            elif bu in RUSHENG_BU and any(abs(b - bu) == 1 for b in found & RUSHENG_BU):
                notes.append(f"入声邻部通押：「{ch}」属{have}，邻于{bu_name(bu)}")
            else:
                source = "中华新韵" if mode == "xinyun" else "词林正韵"
                out.append(("rhyme", "出韵", pos, f"「{ch}」 is in {have}, not this rhyme group's {bu_name(bu)} ({source})"))
    return out, list(dict.fromkeys(used)), notes


@dataclass
class _Trial:
    """One 体 tried against the text."""

    variant: Variant
    form: list[_Fault]
    soft: list[_Fault]
    tone: list[_Fault]
    rhyme: list[_Fault]
    rhyme_groups: list[str]
    notes: list[str]

    @property
    def key(self) -> tuple[int, int]:
        """Fewest broken rhyme units and 片 first, then fewest 句读, 平仄 and rhyme faults."""
        return len(self.form), len(self.soft) + len(self.tone) + len(self.rhyme)


def _best_trial(w: _Written, tones: list[int], variants: list[Variant], mode: str) -> _Trial:
    """The 体 with fewest hard form faults, then fewest other faults; rhyme is only worked out for 体 still in the race."""
    staged = [(v, *_form_faults(w, v)) for v in variants]
    fewest = min(len(hard) for _, hard, _ in staged)
    best: _Trial | None = None
    for v, hard, soft in staged:
        if len(hard) > fewest:
            continue
        tone = _tone_faults(tones, v)
        if best is not None and len(soft) + len(tone) >= best.key[1]:
            continue  # cannot beat the best even with a perfect rhyme (ties keep the earlier 体)
        rhyme, used, notes = _rhyme_faults(w.text, v, mode)
        trial = _Trial(v, hard, soft, tone, rhyme, used, notes)
        if best is None or trial.key < best.key:
            best = trial
    assert best is not None
    return best


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _locate(ends: list[int], offset: int) -> tuple[int, int]:
    """1-based (line, position) of a character offset, given the end offset of each line."""
    index = min(bisect_right(ends, offset), len(ends) - 1)
    start = ends[index - 1] if index else 0
    return index + 1, offset - start + 1


def _violations(trial: _Trial, text: str, ends: list[int]) -> list[Violation]:
    """The trial's faults as located violations (tone messages quote the 谱's pattern of the line)."""
    out = []
    starts = [0, *ends[:-1]]
    line_patterns = [trial.variant.pattern[a:b] for a, b in zip(starts, ends)]
    label = trial.variant.label
    last = len(ends) - 1
    tone_messages: dict[tuple[str, int], str] = {}  # a 词 has dozens of tone faults, few distinct messages
    for category, rule, offset, message in trial.form + trial.tone + trial.rhyme:
        if offset is None:
            out.append(violation(category, rule, None, None, None, message))
            continue
        index = min(bisect_right(ends, offset), last)
        if category == "tone":
            key = (message, index)
            found = tone_messages.get(key)
            if found is None:
                found = tone_messages[key] = f"{message} in {line_patterns[index]} ({label})"
            message = found
        out.append(violation(category, rule, index + 1, offset - starts[index] + 1, text[offset], message))
    return out


def _lines(w: _Written, v: Variant) -> list[int]:
    """End offsets of the 句 as read: the text's own breaks, except a 、 or a break where the 谱 has a 读 (a pause)."""
    ends = [pos for pos, kind in sorted(w.breaks.items()) if kind in ("line", "stanza") and v.ends.get(pos) != "读"]
    return [*ends, len(w.text)]


def _misfit(w: _Written, stanzas: list[list[Segment]], cipai: str, variants: tuple[Variant, ...]) -> CiResult:
    """No 体 has the text's length: one 词牌句式 violation naming the nearest 体 and the first 句 off its structure."""
    nearest = min(variants, key=lambda v: (abs(v.chars - len(w.text)), len(_form_faults(w, v)[0])))
    found = " / ".join(" ".join(str(len(seg.text)) for seg in st) for st in stanzas)
    lengths = sorted({v.chars for v in variants})
    shape = " / ".join(st[0].text for st in nearest.stanzas)
    message = (f"句 lengths {found} ({len(w.text)} characters) fit no 体 of {cipai} (体 of {', '.join(map(str, lengths))} "
               f"characters); nearest {nearest.name}: {shape}")
    line = next((n for n, end in enumerate(w.segment_ends, start=1) if end not in nearest.ends), None)
    lines = [seg.text for st in stanzas for seg in st]
    return CiResult(False, None, [violation("form", "词牌句式", line, None, None, message)], [], lines=lines)


def check_ci(cipai_name: str, stanzas: list[list[Segment]], mode: str = "pingshui") -> CiResult:
    """Check a 词 against every 体 of its 词牌 (same length first, then fewest faults) and report on the best one."""
    cipai = load_cipai()[cipai_name]
    w = _written(stanzas)
    same_length = [v for v in cipai.variants if v.chars == len(w.text)]
    if not same_length:
        return _misfit(w, stanzas, cipai.name, cipai.variants)
    tones = [rd.tone for rd in line_readings(w.text, mode)]
    best = _best_trial(w, tones, same_length, mode)
    v = best.variant
    ends = _lines(w, v)
    starts = [0, *ends[:-1]]
    notes = [f"依{cipai.name}{v.name}：{'→'.join(best.rhyme_groups) or '韵部未定'}", *best.notes]
    if best.soft:
        where = "、".join(f"第{_locate(ends, off)[0]}句" for _, _, off, _ in best.soft if off is not None)
        notes.append(f"句读与谱不同（{where}），同一韵段内不计为出律")
    if w.n_stanzas == 1 and v.pian > 1:
        notes.append(f"no stanza break in the text: read as the {chinese_number(v.pian)} 片 of {v.name} in sequence")
    return CiResult(
        form_ok=not best.form,
        variant=f"{cipai.name}·{v.name}",
        violations=_violations(best, w.text, ends),
        notes=notes,
        tone_ok=not best.tone,
        rhyme_ok=not best.rhyme,
        lines=[w.text[a:b] for a, b in zip(starts, ends)],
        template_lines=[v.pattern[a:b] for a, b in zip(starts, ends)],
        rhyme_group="→".join(best.rhyme_groups) or None,
        rhyme_chars=[w.text[pos] for pos in sorted(v.rhyme_tone)],
        rhyme_positions=[(line - 1, position - 1) for line, position in (_locate(ends, pos) for pos in sorted(v.rhyme_tone))],
    )
