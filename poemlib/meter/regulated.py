"""近体诗 (绝句, 律诗): form, 平仄 (二四六分明, 粘对, 孤平, 三平尾, 拗救) and rhyme."""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from poemlib.meter.readings import (
    EITHER,
    PING,
    UNKNOWN,
    ZE,
    Reading,
    compatible,
    group_short,
    line_readings,
    lines_tones,
    neighbours,
    to_simplified,
)
from poemlib.meter.report import Violation, violation
from poemlib.meter.text import Segment, fit_regular_lines

# poem type → (number of lines, characters per line)
FORMS: dict[str, tuple[int, int]] = {"五言绝句": (4, 5), "七言绝句": (4, 7), "五言律诗": (8, 5), "七言律诗": (8, 7)}

_BASE5 = {(PING, PING): "平平仄仄平", (PING, ZE): "平平平仄仄", (ZE, PING): "仄仄仄平平", (ZE, ZE): "仄仄平平仄"}
_TONE_NAME = {PING: "平", ZE: "仄"}


def _opp(tone: int) -> int:
    """The other tone."""
    return ZE if tone == PING else PING


def _pattern(length: int, second: int, ending: int) -> str:
    """Standard 平仄 of a line from the tone of its 2nd character and of its last (律句 A/B/C/D)."""
    if length == 5:
        return _BASE5[(second, ending)]
    return _TONE_NAME[second] * 2 + _BASE5[(_opp(second), ending)]


_PATTERNS = {(n, s, e): _pattern(n, s, e) for n in (5, 7) for s in (PING, ZE) for e in (PING, ZE)}


def pattern(length: int, second: int, ending: int) -> str:
    """Standard 平仄 of a 5- or 7-character line (precomputed: it is asked for on every line)."""
    return _PATTERNS[(length, second, ending)]


# ---------------------------------------------------------------------------
# Form
# ---------------------------------------------------------------------------


def _check_form(poem_type: str, segments: list[Segment]) -> tuple[list[str], list[Violation]]:
    """Lines of the poem and any 句数/字数 violations."""
    count, length = FORMS[poem_type]
    fitted = fit_regular_lines(segments, count, length)
    if fitted is not None:
        return fitted, []
    lines = [seg.text for seg in segments]
    out = []
    if len(lines) != count:
        out.append(violation("form", "句数", None, None, None, f"{poem_type} needs {count} lines of {length} characters, found {len(lines)} lines"))
    for number, line in enumerate(lines, start=1):
        if len(line) != length:
            out.append(violation("form", "字数", number, None, None, f"line {number} 「{line}」 has {len(line)} characters, {poem_type} needs {length}"))
    return lines, out


# ---------------------------------------------------------------------------
# Rhyme
# ---------------------------------------------------------------------------


class _Rhyme(NamedTuple):
    """Rhyme analysis of a 近体诗."""

    group: str | None
    first_rhymes: bool
    chars: list[str]
    positions: list[tuple[int, int]]  # 0-based (line, position) of each rhyme slot
    violations: list[Violation]
    notes: list[str]


def _pick_group(even: list[Reading], first: Reading) -> str | None:
    """The rhyme group shared by most even-line endings (ties: the one the first line shares, then first seen)."""
    counts: dict[str, int] = {}  # insertion order is the order first seen
    for rd in even:
        groups = rd.groups
        for group in sorted(groups) if len(groups) > 1 else groups:
            counts[group] = counts.get(group, 0) + 1
    best, best_key = None, None
    for group, count in counts.items():
        key = (count, group in first.groups)
        if best_key is None or key > best_key:  # strictly better: ties keep the group seen first
            best, best_key = group, key
    return best


_RhymeFault = tuple[str, int, int, str, str]  # rule, 1-based line, position, character, message


def _even_line_faults(lines: list[str], ends: list[Reading], group: str | None) -> tuple[list[_RhymeFault], list[str]]:
    """Each even line must end in a 平 character of the poem's group."""
    out: list[_RhymeFault] = []
    notes: list[str] = []
    for i in range(1, len(lines), 2):
        ch, rd = lines[i][-1], ends[i]
        if rd.tone == ZE:
            out.append(("押仄声韵", i + 1, len(lines[i]), ch, f"rhyme position ends in 仄声 「{ch}」: 近体诗 rhymes in 平声"))
        elif not rd.groups:
            notes.append(f"韵脚「{ch}」不在韵表中，未判断是否出韵")
        elif group not in rd.groups:
            have = "、".join(sorted(rd.groups))
            out.append(("出韵", i + 1, len(lines[i]), ch, f"「{ch}」 is in {have}, not the poem's {group}"))
    return out, notes


def _first_line_rhyme(line: str, first: Reading, group: str | None, mode: str) -> tuple[bool, list[_RhymeFault], list[str]]:
    """Whether the first line rhymes: in the group, or borrowing a neighbour (allowed, noted); 平 elsewhere is 出韵."""
    ch = line[-1]
    if first.tone == ZE or group is None:
        return False, [], []
    if group in first.groups:
        return True, [], []
    near = neighbours(group, mode)
    borrowed = sorted(g for g in first.groups if group_short(g) in near)
    if borrowed:
        return True, [], [f"首句借邻韵：「{ch}」属{'、'.join(borrowed)}，邻于{group}"]
    if first.tone != PING:
        return False, [], []  # 平/仄 both possible: read as an unrhymed 仄 ending
    if not first.groups:
        return True, [], [f"首句韵脚「{ch}」不在韵表中，未判断是否出韵"]
    message = f"the first line ends in 平声 「{ch}」 ({'、'.join(sorted(first.groups))}), outside the poem's {group} and its neighbours"
    return True, [("出韵", 1, len(line), ch, message)], []


def _repeated_rhymes(lines: list[str], positions: list[int]) -> list[_RhymeFault]:
    """重韵: the same rhyme character (simplified or traditional) used at two rhyme positions."""
    out: list[_RhymeFault] = []
    seen: dict[str, int] = {}
    for idx in positions:
        ch = lines[idx][-1]
        key = _simplified(ch)
        if key in seen:
            out.append(("重韵", idx + 1, len(lines[idx]), ch, f"「{ch}」 already rhymes line {seen[key]}"))
        else:
            seen[key] = idx + 1
    return out


_SIMPLIFIED: dict[str, str] = {}


def _simplified(ch: str) -> str:
    """Simplified form of one character (cached: asked for every rhyme character)."""
    found = _SIMPLIFIED.get(ch)
    if found is None:
        found = _SIMPLIFIED[ch] = to_simplified(ch)
    return found


def _check_rhyme(lines: list[str], mode: str) -> _Rhyme:
    """Even lines (and a 平-ending first line) must rhyme in one 平声 group; the first line may borrow a neighbour."""
    ends = "".join(map(_last_char, lines))
    key = (ends, tuple(map(len, lines)), mode)
    cached = _RHYME_CACHE.get(key)
    if cached is None:
        cached = _rhyme_plan(lines, line_readings(ends, mode), mode)
        if len(_RHYME_CACHE) >= _RHYME_CACHE_SIZE:
            _RHYME_CACHE.clear()
        _RHYME_CACHE[key] = cached
    group, first_rhymes, chars, positions, specs, notes = cached
    faults = []
    for rule, line, pos, ch, message in specs:
        faults.append(violation("rhyme", rule, line, pos, ch, message))
    return _Rhyme(group, first_rhymes, list(chars), list(positions), faults, list(notes))


# The rhyme verdict depends only on each line's length and last character: poems share their rhyme words often.
_RhymePlan = tuple[str | None, bool, tuple[str, ...], tuple[tuple[int, int], ...], tuple[_RhymeFault, ...], tuple[str, ...]]
_RHYME_CACHE: dict[tuple[str, tuple[int, ...], str], _RhymePlan] = {}  # (last characters, line lengths, mode)
_last_char = itemgetter(-1)
_fault_line = itemgetter(1)  # a rhyme fault's 1-based line
_RHYME_CACHE_SIZE = 65536


def _rhyme_plan(lines: list[str], ends: list[Reading], mode: str) -> _RhymePlan:
    """Group, whether the first line rhymes, rhyme characters, rhyme slots, faults (as plain tuples) and notes."""
    even_pos = list(range(1, len(lines), 2))
    group = _pick_group([ends[i] for i in even_pos], ends[0])
    out, notes = _even_line_faults(lines, ends, group)
    first_rhymes, first_faults, first_notes = _first_line_rhyme(lines[0], ends[0], group, mode)
    positions = ([0] if first_rhymes else []) + even_pos
    faults = first_faults + out + _repeated_rhymes(lines, positions)
    if len(faults) > 1:
        faults.sort(key=_fault_line)
    slots = tuple([(i, len(lines[i]) - 1) for i in positions])
    return group, first_rhymes, tuple([lines[i][-1] for i in positions]), slots, tuple(faults), tuple(first_notes + notes)


# ---------------------------------------------------------------------------
# Tone
# ---------------------------------------------------------------------------

_Found = tuple[str, int, str]  # rule, 1-based position, message


def _line_faults(tones: tuple[int, ...], second: int, ending: int, partner_third: int | None, is_first: bool) -> tuple[float, tuple[_Found, ...], tuple[str, ...]]:
    """Cost, violations and accepted licences of one line read as the 律句 with this 2nd-character tone and ending.

    Depends only on the line's tones (and the rescuing tone of its partner), so its options are cached: poems
    share tone shapes far more often than characters. Notes carry '{n}' for the line number.
    """
    n = len(tones)
    k = n - 5  # offset of the five-character tail inside a seven-character line
    pat = pattern(n, second, ending)
    tail_second = second if n == 5 else _opp(second)
    faults: list[_Found] = []
    notes: list[str] = []
    for pos in (2, 4) if n == 5 else (2, 4, 6):
        want = PING if pat[pos - 1] == "平" else ZE
        tone = tones[pos - 1]
        if tone == EITHER or tone == UNKNOWN or tone == want:
            continue
        if pos - k == 4 and ending == ZE and tail_second == PING and compatible(tones[k + 2], ZE):
            # 特定句式 平平仄平仄 / 仄仄平平仄平仄: the tail's 3rd and 4th swap. Its 1st should be 平, but famous
            # 合律 poems open with 仄 there (孟浩然「故人具鸡黍」), so a 仄 is noted as a licence, not flagged.
            form = "平平仄平仄" if n == 5 else "仄仄平平仄平仄"
            extra = f"，第{k + 1}字仄（拗）" if tones[k] == ZE else ""
            notes.append(f"第{{n}}句用特定句式（{form}）{extra}")
            continue
        if pos - k == 4 and ending == ZE and tail_second == ZE and partner_third is not None and compatible(partner_third, PING):
            # 大拗 in 仄仄平平仄: the next line rescues it with a 平 in its tail's 3rd position (对句相救).
            notes.append(f"第{{n}}句第{pos}字拗，对句第{k + 3}字用平声相救")
            continue
        faults.append(("二四六分明", pos, f"position {pos} should be {pat[pos - 1]} in {pat}"))
    if ending == PING and tail_second == PING and tones[k] == ZE:
        if tones[k + 2] == ZE:
            faults.append(("孤平", k + 1, f"仄平仄仄平: only one 平 besides the rhyme; position {k + 3} must be 平 to rescue it"))
        elif tones[k + 2] == PING:
            notes.append(f"第{{n}}句孤平拗救（本句自救：第{k + 1}字仄，第{k + 3}字平）")
    if ending == PING and tones[n - 3] == PING and tones[n - 2] == PING and tones[n - 1] == PING:
        faults.append(("三平尾", n - 2, "the line ends with three 平"))
    if not is_first and tones[-1] in (PING, ZE) and tones[-1] != ending:
        rule = "平收" if ending == PING else "仄收"
        faults.append((rule, n, f"this line should end in {_TONE_NAME[ending]}"))
    # Prefer the reading the 2nd character itself gives, so a whole line out of step reads as 失粘/失对.
    bias = 0.01 if tones[1] in (PING, ZE) and tones[1] != second else 0.0
    return len(faults) + bias, tuple(faults), tuple(notes)


def _check_tone(lines: list[str], tones: list[tuple[int, ...]], first_rhymes: bool) -> tuple[list[Violation], list[str], int, int]:
    """粘对 and per-line rules, choosing each line's 2nd-character tone to explain the poem with fewest faults."""
    # A rhyme position is 平 by definition: a polyphonic rhyme character (看) counts as 平 there, so 三平尾 shows.
    for i in range(0 if first_rhymes else 1, len(tones), 1 if first_rhymes else 2):
        if (i % 2 or i == 0) and tones[i][-1] == EITHER:
            tones[i] = (*tones[i][:-1], PING)
    return _tone_plan(lines, tones, first_rhymes)


# cost, faults before position 2, faults from position 2 on (each sorted by position), notes, 2nd-position fault
_LineOption = tuple[float, tuple[_Found, ...], tuple[_Found, ...], tuple[str, ...], bool]
_OptionKey = tuple[tuple[int, ...], int, int | None, bool]
# A plain dict (cleared when full): an lru_cache call costs more than the lookup it saves on a poem's 8 lines.
_OPTIONS: dict[_OptionKey, tuple[_LineOption, _LineOption]] = {}
_OPTIONS_SIZE = 65536


def _line_options(key: _OptionKey) -> tuple[_LineOption, _LineOption]:
    """The line read with a 平 and with a 仄 2nd character: cost, faults, notes ('{n}' for the line number)."""
    tones, ending, partner_third, is_first = key
    out = []
    for second in (PING, ZE):
        cost, faults, notes = _line_faults(tones, second, ending, partner_third, is_first)
        second_fault = bool(faults) and faults[0][1] == 2 and faults[0][0] == "二四六分明"
        ordered = sorted(faults, key=_fault_position)
        before = sum(1 for fault in ordered if fault[1] < 2)
        out.append((cost, tuple(ordered[:before]), tuple(ordered[before:]), notes, second_fault))
    if len(_OPTIONS) >= _OPTIONS_SIZE:
        _OPTIONS.clear()
    found = _OPTIONS[key] = (out[0], out[1])
    return found


def _fault_position(fault: _Found) -> int:
    """Sort key of a line's fault: its position."""
    return fault[1]


def _tone_plan(lines: list[str], tones: list[tuple[int, ...]], first_rhymes: bool) -> tuple[list[Violation], list[str], int, int]:
    """Violations (sorted by line and position), notes, the first line's 2nd-character tone and the first ending."""
    last_first = tones[0][-1]
    first_ending = last_first if last_first in (PING, ZE) else (PING if first_rhymes else ZE)
    count = len(tones)
    get = _OPTIONS.get
    options = []
    for i, row in enumerate(tones):
        key = (row, PING, None, False) if i % 2 else (row, first_ending if i == 0 else ZE, tones[i + 1][len(row) - 3] if i + 1 < count else None, i == 0)
        options.append(get(key) or _line_options(key))
    states = _best_states(options)
    out: list[Violation] = []
    notes: list[str] = []
    previous = PING
    # Plain loops, not comprehensions: a poem has a handful of faults, and each comprehension is a call of its own.
    for i, state in enumerate(states):
        _cost, before, after, line_notes, second_fault = options[i][state == ZE]
        line = lines[i]
        number = i + 1
        # Faults in line and position order: the line's faults before position 2, its 粘/对 faults, the rest.
        for rule, pos, message in before:
            out.append(violation("tone", rule, number, pos, line[pos - 1], message))
        if i:
            wanted_same = not i % 2
            if (state == previous) != wanted_same:
                rule, relation = ("失粘", "match") if wanted_same else ("失对", "oppose")
                out.append(violation("tone", rule, number, 2, line[1], f"line {number} position 2 should {relation} line {i} position 2"))
            if second_fault and (tones[i][1] == previous) != wanted_same and tones[i][1] in (PING, ZE):
                # The 2nd character itself breaks 粘/对 as well as 二四六分明 (巨龙卧波: 龙 平 after a 仄 line).
                rule, relation = ("失粘", "match") if wanted_same else ("失对", "oppose")
                message = f"line {number} position 2 should {relation} line {i} position 2 (its own tone breaks the {rule[1]})"
                out.append(violation("tone", rule, number, 2, line[1], message))
        for rule, pos, message in after:
            out.append(violation("tone", rule, number, pos, line[pos - 1], message))
        for note in line_notes:
            notes.append(note.replace("{n}", str(number)))
        previous = state
    return out, notes, states[0], first_ending


def _best_states(options: list[tuple[_LineOption, _LineOption]]) -> list[int]:
    """Viterbi over lines: each line's 2nd-character tone; a broken 粘 or 对 costs 1 (ties keep 平 and the same path)."""
    option_p, option_z = options[0]
    cost_p, cost_z = option_p[0], option_z[0]
    back: list[tuple[bool, bool]] = []  # per line after the first: did the 平 / 仄 state come from the same state?
    odd = False
    for option_p, option_z in options[1:]:
        odd = not odd
        if odd:  # 对: a change is free, staying costs 1
            keep_p, keep_z = cost_p + 1 <= cost_z, cost_z + 1 <= cost_p
            cost_p, cost_z = (cost_p + 1 if keep_p else cost_z) + option_p[0], (cost_z + 1 if keep_z else cost_p) + option_z[0]
        else:  # 粘: staying is free, a change costs 1
            keep_p, keep_z = cost_p <= cost_z + 1, cost_z <= cost_p + 1
            cost_p, cost_z = (cost_p if keep_p else cost_z + 1) + option_p[0], (cost_z if keep_z else cost_p + 1) + option_z[0]
        back.append((keep_p, keep_z))
    state = PING if cost_p <= cost_z else ZE
    states = [state]
    for from_same_p, from_same_z in reversed(back):
        if not (from_same_p if state == PING else from_same_z):
            state = ZE if state == PING else PING
        states.append(state)
    states.reverse()
    return states


@lru_cache(maxsize=64)
def _template(poem_type: str, second: int, first_ending: int, count: int, length: int) -> tuple[str, tuple[str, ...]]:
    """Name and line patterns of the standard template with this first line."""
    name = f"{poem_type}·{'平起' if second == PING else '仄起'}首句{'入韵' if first_ending == PING else '不入韵'}"
    rows = [pattern(length, second, first_ending)]
    state = second
    for i in range(1, count):
        state = state if i % 2 == 0 else _opp(state)
        rows.append(pattern(length, state, PING if i % 2 else ZE))
    return name, tuple(rows)


def check_regular(poem_type: str, segments: list[Segment], mode: str) -> dict[str, Any]:
    """Form, 平仄 and rhyme of a 近体诗, as MeterReport fields (lines, verdicts, violations, template, rhyme)."""
    count, length = FORMS[poem_type]
    lines, form_faults = _check_form(poem_type, segments)
    violations = list(form_faults)
    fields: dict[str, Any] = {
        "lines": lines, "form_ok": not form_faults, "tone_ok": False, "rhyme_ok": None, "violations": violations, "notes": [],
        "template": None, "template_lines": [], "rhyme_group": None, "rhyme_chars": [], "rhyme_positions": [],
    }
    if not lines:
        fields["rhyme_ok"] = False
        return fields
    rhyme = _check_rhyme(lines, mode) if all(lines) else None
    if rhyme is not None:
        fields.update(rhyme_ok=not rhyme.violations, notes=rhyme.notes, rhyme_group=rhyme.group, rhyme_chars=rhyme.chars,
                      rhyme_positions=rhyme.positions)
        violations += rhyme.violations
    if set(map(len, lines)) == {length}:
        tones = lines_tones(lines, mode)
        tone_faults, tone_notes, second, first_ending = _check_tone(lines, tones, rhyme.first_rhymes if rhyme else False)
        violations += tone_faults
        fields["notes"] += tone_notes
        fields["tone_ok"] = not tone_faults and not form_faults
        fields["template"], template_lines = _template(poem_type, second, first_ending, count, length)
        fields["template_lines"] = list(template_lines)
    if form_faults:
        violations.append(violation("tone", "格式不合", None, None, None, f"the text is not a {poem_type}, so its 平仄 cannot follow the {poem_type} template"))
    return fields
