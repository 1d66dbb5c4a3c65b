"""Splitting model output into stanzas and lines (句/逗), whatever the punctuation and line breaks."""

from __future__ import annotations

import re
from itertools import pairwise
from operator import itemgetter
from typing import NamedTuple

# Hard breaks end a 句 or 逗; Chinese (full width, half width, small forms) and ASCII forms all occur.
_BREAKS = "，。！？；、,.!?;：:…/|｜｡､﹐﹑﹒﹔﹕﹖﹗．"
# A run of these alone is a pause inside a line (「长向月圆时候、望人归」), not a line end.
_PAUSE_CHARS = "、､﹑"
_PAUSE_SET = frozenset(_PAUSE_CHARS)
_BREAK_SPLIT_RE = re.compile(f"([{re.escape(_BREAKS)}\n]+)")
# Dropped entirely: quotes, brackets, decoration and the stray Latin-1/CJK punctuation models add.
_DROP_RE = re.compile(r"[“”‘’\"'「」『』《》〈〉()（）【】\[\]·・—–\-~～*#_\\]")
# A title the model repeats inside the poem (《早发白帝城》) is not part of any line.
_TITLE_RE = re.compile(r"《[^》\n]*》")
_SPACE_RE = re.compile(r"[ \t\u3000\u00a0]+")
_STANZA_RE = re.compile(r"\n[ \t\u3000\u00a0]*\n\s*")


class Segment(NamedTuple):
    """One 句/逗 as written: its characters and where spaces (possible separators) fell inside it."""

    text: str
    soft_breaks: tuple[int, ...] = ()  # offsets inside text where the writer left a space
    pause: bool = False  # the segment ends in 、: a pause inside a line rather than a line end


_new_tuple = tuple.__new__
_segment_text = itemgetter(0)  # Segment.text


def _segment(piece: str, pause: bool) -> Segment | None:
    """One segment from the text between two breaks, spaces kept as soft breaks; None when it is empty."""
    if not _SPACE_RE.search(piece):
        return Segment(piece, (), pause) if piece else None
    parts = [p for p in _SPACE_RE.split(piece.strip()) if p]
    if not parts:
        return None
    offsets, total = [], 0
    for part in parts[:-1]:
        total += len(part)
        offsets.append(total)
    return Segment("".join(parts), tuple(offsets), pause)


def _segments(chunk: str) -> list[Segment]:
    """Split one stanza (already stripped of dropped marks) into segments at hard breaks, keeping spaces as soft breaks."""
    parts = _BREAK_SPLIT_RE.split(chunk)  # text, break, text, break, …, text
    spaced = _SPACE_RE.search(chunk) is not None
    if not spaced and _PAUSE_SET.isdisjoint(chunk):  # the usual poem: plain 句 only (tuple.__new__ skips a Python call)
        return [_new_tuple(Segment, (piece, (), False)) for piece in parts[::2] if piece]
    out = []
    last = len(parts) - 1
    for k in range(0, len(parts), 2):
        piece = parts[k]
        pause = k < last and not parts[k + 1].strip(_PAUSE_CHARS)
        if not spaced:
            if piece:
                out.append(Segment(piece, (), pause))
            continue
        seg = _segment(piece, pause)
        if seg is not None:
            out.append(seg)
    return out


def split_stanzas(text: str) -> list[list[Segment]]:
    """Stanzas (blank-line separated) of segments; empty stanzas dropped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "《" in text:
        text = _TITLE_RE.sub("", text)
    text = _DROP_RE.sub("", text).strip()
    stanzas = [_segments(chunk) for chunk in _STANZA_RE.split(text)] if "\n" in text else [_segments(text)]
    return [s for s in stanzas if s]


def split_lines(text: str) -> list[str]:
    """All 句 of a poem in order, punctuation, spaces and stanza breaks removed."""
    return [seg.text for stanza in split_stanzas(text) for seg in stanza]


def fit_regular_lines(segments: list[Segment], count: int, length: int) -> list[str] | None:
    """Lines of a 近体诗 of `count` lines of `length` characters, or None when the text cannot be read that way.

    Models sometimes write a whole couplet without a comma, or separate 句 by a space only: a segment that is a
    multiple of the line length is cut into lines when that makes the whole poem fit.
    """
    plain = list(map(_segment_text, segments))
    if len(plain) == count and set(map(len, plain)) == {length}:
        return plain
    pieces: list[str] = []
    for seg in segments:
        cuts = [0, *seg.soft_breaks, len(seg.text)]
        parts = [seg.text[a:b] for a, b in pairwise(cuts)]
        if all(len(p) % length == 0 for p in parts):
            pieces.extend(p[i:i + length] for p in parts for i in range(0, len(p), length))
        elif len(seg.text) % length == 0:
            pieces.extend(seg.text[i:i + length] for i in range(0, len(seg.text), length))
        else:
            return None
    return pieces if len(pieces) == count else None
