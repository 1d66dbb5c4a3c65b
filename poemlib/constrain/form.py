"""The abstract form a constrained poem follows: lines of per-position tone requirements, rhyme slots tied to rhyme
sets, punctuation and stanza breaks. 近体 templates compile to it here; 词 体 compile to it in `ci.py`."""

from __future__ import annotations

from dataclasses import dataclass

from poemlib.meter.readings import EITHER, PING, ZE
from poemlib.meter.regulated import FORMS, pattern

# A requirement is a bit set over tone codes (bit c allows a character read with code c: 1 平, 2 仄, 3 either).
# Code 0 (no known reading) is never allowed inside a poem.
ALLOW_PING = (1 << PING) | (1 << EITHER)
ALLOW_ZE = (1 << ZE) | (1 << EITHER)
ALLOW_ANY = (1 << PING) | (1 << ZE) | (1 << EITHER)
ONLY_ZE = 1 << ZE

LINE_BREAK = "\\n"  # the poem's newline as it appears inside the JSON string (two characters)


@dataclass(frozen=True)
class LineSpec:
    """One 句: a tone requirement per character, the rhyme set its last character rhymes in (or None), its
    closing punctuation, whether a stanza break (blank line) follows it, and the suffix that turns a rhyme group of
    the set into the rhyme key this slot needs (词: 平/仄 after the 部 name; '' for any tone and for 近体)."""

    tones: tuple[int, ...]
    rhyme: int | None
    punct: str
    stanza_end: bool = False
    rhyme_suffix: str = ""


@dataclass(frozen=True)
class RhymeSet:
    """Rhyme slots that must share one group chosen from `groups`, with distinct characters."""

    groups: frozenset[str]


@dataclass(frozen=True)
class FormSpec:
    """One template (近体 pattern or 词 体): its lines; every template of a family has the same line lengths."""

    name: str
    lines: tuple[LineSpec, ...]

    def rhyme_counts(self) -> dict[int, int]:
        """How many rhyme slots each rhyme set has in this template."""
        counts: dict[int, int] = {}
        for line in self.lines:
            if line.rhyme is not None:
                counts[line.rhyme] = counts.get(line.rhyme, 0) + 1
        return counts


@dataclass(frozen=True)
class FormFamily:
    """What one requested form allows: its poem_type, a fixed title head (词牌·), templates and rhyme sets."""

    poem_type: str
    title_head: str
    templates: tuple[FormSpec, ...]
    rhyme_sets: tuple[RhymeSet, ...]

    def __post_init__(self) -> None:
        """Templates must share the line lengths and punctuation so the text layout is fixed by the family."""
        shapes = {tuple((len(line.tones), line.punct, line.stanza_end) for line in t.lines) for t in self.templates}
        if len(shapes) != 1:
            raise ValueError(f"{self.poem_type}{self.title_head}: templates differ in line lengths or punctuation")

    @property
    def shape(self) -> FormSpec:
        """Any template (for lengths and punctuation)."""
        return self.templates[0]


def _regular_line(pat: str, *, first: bool, rhymes: bool) -> tuple[int, ...]:
    """Requirements of one 近体 line: 二四六 per the pattern, 一三五 free except where the checker forbids it."""
    n = len(pat)
    k = n - 5
    reqs = [(ALLOW_PING if pat[i] == "平" else ALLOW_ZE) if i % 2 == 1 else ALLOW_ANY for i in range(n)]
    ending_ping = pat[-1] == "平"
    tail = pat[k:]
    if ending_ping and tail == "平平仄仄平":
        reqs[k] = ALLOW_PING  # 孤平: the tail's first character may not be 仄 (no 拗救 needed, none generated)
    if ending_ping and tail == "仄仄仄平平":
        reqs[k + 2] = ALLOW_ZE  # 三平尾: the tail's third character may not be plainly 平
    if ending_ping:
        reqs[-1] = ALLOW_PING
    elif first and not rhymes:
        reqs[-1] = ONLY_ZE  # an unrhymed first line ends plainly 仄, so the checker reads the template we meant
    else:
        reqs[-1] = ALLOW_ZE
    return tuple(reqs)


def regular_family(poem_type: str, ping_groups: frozenset[str]) -> FormFamily:
    """The four standard templates (平起/仄起 × 首句入韵 or not) of a 近体 form, rhyming in one 平声 group."""
    if poem_type not in FORMS:
        raise ValueError(f"{poem_type!r} is not a 近体 form; expected one of {', '.join(FORMS)}")
    count, length = FORMS[poem_type]
    templates = []
    for second in (PING, ZE):
        for first_ending in (PING, ZE):
            lines = []
            state = second
            for i in range(count):
                if i > 0 and i % 2 == 1:
                    state = ZE if state == PING else PING
                ending = first_ending if i == 0 else (PING if i % 2 else ZE)
                pat = pattern(length, state, ending)
                rhymes = i % 2 == 1 or (i == 0 and first_ending == PING)
                tones = _regular_line(pat, first=i == 0, rhymes=rhymes)
                lines.append(LineSpec(tones, 0 if rhymes else None, "。" if i % 2 else "，"))
            name = f"{poem_type}·{'平起' if second == PING else '仄起'}首句{'入韵' if first_ending == PING else '不入韵'}"
            templates.append(FormSpec(name, tuple(lines)))
    return FormFamily(poem_type, "", tuple(templates), (RhymeSet(ping_groups),))
