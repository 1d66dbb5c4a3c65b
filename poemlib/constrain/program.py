"""The answer as a program of segments: fixed JSON text (with one branching head: unfit, or a poem_type and 词牌),
free strings (title, explanation) and poem lines, laid out exactly like the training targets
(`json.dumps(..., ensure_ascii=False)` of poemlib.schema.annotation_to_target)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal as KindLiteral

from poemlib.constrain.form import LINE_BREAK, FormFamily

TITLE_MAX_CHARS = 12
TEXT_MAX_CHARS = 400


@dataclass(frozen=True)
class Literal:
    """Fixed text, or a choice between texts each followed by its own program (None: the next segment)."""

    alternatives: tuple[tuple[bytes, Program | None], ...]


@dataclass(frozen=True)
class FreeText:
    """A JSON string body the model writes freely: a title (汉字 only) or prose (no quote, backslash or control)."""

    kind: KindLiteral["title", "text"]
    max_chars: int


@dataclass(frozen=True)
class Line:
    """The characters of poem line `index` of the family (punctuation follows as a Literal)."""

    index: int


@dataclass(frozen=True)
class Stop:
    """The end of the answer: only a stop token (<|im_end|> / eos)."""


Segment = Literal | FreeText | Line | Stop


@dataclass(frozen=True, eq=False)
class Program:
    """Segments in order, the form family the poem lines follow, and worst-case tokens from each segment on."""

    segments: tuple[Segment, ...]
    family: FormFamily | None
    worst: tuple[int, ...]


def _literal_worst(segment: Literal) -> int:
    """Most tokens a literal can take: one per byte, plus the longest branch after it."""
    return max(len(text) + (prog.worst[0] if prog else 0) for text, prog in segment.alternatives)


def _segment_worst(segment: Segment, family: FormFamily | None) -> int:
    """Most tokens one segment can take when closed as early as allowed."""
    if isinstance(segment, Literal):
        return _literal_worst(segment)
    if isinstance(segment, Line):
        assert family is not None
        return len(family.shape.lines[segment.index].tones)
    return 1  # a free string's one visible token, or the stop token


def make_program(segments: list[Segment], family: FormFamily | None) -> Program:
    """A program with its worst-case suffix sums."""
    worst = [0] * (len(segments) + 1)
    for i in range(len(segments) - 1, -1, -1):
        worst[i] = worst[i + 1] + _segment_worst(segments[i], family)
    return Program(tuple(segments), family, tuple(worst))


def _lit(text: str) -> Literal:
    """A one-way literal."""
    return Literal(((text.encode("utf-8"), None),))


def _key(name: str) -> str:
    """`, "name": "` as json.dumps writes the step from one string field to the next."""
    return f', {json.dumps(name)}: "'


def poem_program(family: FormFamily) -> Program:
    """After the head: title, poem lines with their punctuation and breaks, explanation, closing brace, stop."""
    segments: list[Segment] = [FreeText("title", TITLE_MAX_CHARS), _lit('"' + _key("poem_content"))]
    lines = family.shape.lines
    for i, line in enumerate(lines):
        segments.append(Line(i))
        if i + 1 < len(lines):
            tail = line.punct + LINE_BREAK * (2 if line.stanza_end else 1)
        else:
            tail = line.punct + '"' + _key("poem_explanation")
        segments.append(_lit(tail))
    segments += [FreeText("text", TEXT_MAX_CHARS), _lit('"}'), Stop()]
    return make_program(segments, family)


def unfit_program() -> Program:
    """After the head of an unfit answer: why, explanation, closing brace, stop."""
    segments: list[Segment] = [
        FreeText("text", TEXT_MAX_CHARS), _lit('"' + _key("poem_explanation")),
        FreeText("text", TEXT_MAX_CHARS), _lit('"}'), Stop(),
    ]
    return make_program(segments, None)


def poem_head(family: FormFamily) -> str:
    """The answer's opening up to the free part of the title, e.g. `{"poem_type": "词", "poem_title": "如梦令·`."""
    return "{" + json.dumps("poem_type") + ": " + json.dumps(family.poem_type, ensure_ascii=False) + _key("poem_title") + family.title_head


UNFIT_HEAD = "{" + json.dumps("create_condition") + ": false" + _key("poem_content")


def answer_program(families: list[FormFamily], allow_unfit: bool) -> Program:
    """The whole answer: a head choosing unfit or one of the families, then that branch's program."""
    alternatives = [(poem_head(f).encode("utf-8"), poem_program(f)) for f in families]
    if allow_unfit:
        alternatives.append((UNFIT_HEAD.encode("utf-8"), unfit_program()))
    if not alternatives:
        raise ValueError("nothing to generate: no poem form and unfit answers disallowed")
    heads = [text for text, _ in alternatives]
    for a in heads:
        for b in heads:
            if a != b and b.startswith(a):
                raise ValueError(f"answer head {a.decode()!r} is a prefix of {b.decode()!r}: the choice would be ambiguous")
    return make_program([Literal(tuple(alternatives))], None)
