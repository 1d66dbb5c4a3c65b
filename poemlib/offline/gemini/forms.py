"""Which 体裁 / 词牌 a request asks for, read from its user text, and whether a recorded poem is of that form.

Requests are phrased by `poemlib.instructions.render_instruction` (the pool's `poem_type` and `cipai` templates:
「词牌」 in corner brackets, the 体裁 by its schema name) or typed by a user (an extra instruction): a 词牌 counts when
a known 词牌 stands in 「」, a 体裁 when a schema name (or 五绝/七绝/五律/七律) occurs; a bare 词 only through a rendered
`poem_type` template, because "词" also occurs in every generic request ("古典诗词", "词牌·题目").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from poemlib.schema import POEM_TYPES, Annotation

# Short names a user may type for a regulated form ("词牌"/"宋词" are left out: the fixed reminder says 词牌).
_SHORT_NAMES = {"五绝": "五言绝句", "七绝": "七言绝句", "五律": "五言律诗", "七律": "七言律诗"}
_BRACKETED = re.compile(r"[「『]([^」』]{1,12})[」』]")


@dataclass(frozen=True)
class RequestedForm:
    """The form a request names: a schema 体裁 and, for 词, maybe a 词牌."""

    poem_type: str
    cipai: str | None = None

    def label(self) -> str:
        """'七言律诗', '词' or '词·浣溪沙'."""
        return f"{self.poem_type}·{self.cipai}" if self.cipai else self.poem_type


@lru_cache(maxsize=1)
def _type_leads() -> tuple[tuple[str, str], ...]:
    """(rendered `poem_type` template lead without its end punctuation, 体裁) for every template and 体裁."""
    from poemlib.instructions import instruction_pool

    templates = instruction_pool().get("poem_type") or []
    return tuple((str(t).format(poem_type=ptype).rstrip("。！？；.!?;"), ptype) for t in templates for ptype in POEM_TYPES)


def _cipai_in(text: str) -> str | None:
    """The first known 词牌 written in 「」 in the text."""
    from poemlib.meter import parse_cipai

    for inside in _BRACKETED.findall(text):
        name = inside.strip()
        if name and parse_cipai(name) == name:
            return name
    return None


def _type_in(text: str) -> str | None:
    """The 体裁 a rendered template or a regulated-form name in the text asks for."""
    for lead, ptype in _type_leads():
        if lead in text:
            return ptype
    found = [(text.find(name), full) for name, full in [*((t, t) for t in POEM_TYPES if t != "词"), *_SHORT_NAMES.items()]]
    found = [hit for hit in found if hit[0] >= 0]
    return min(found)[1] if found else None


def prepare(with_cipai: bool) -> None:
    """Load the instruction pool (and the 词牌 table) now, so that no timed request pays for it."""
    _type_leads()
    if with_cipai:
        from poemlib.meter import parse_cipai

        parse_cipai("浣溪沙")


def requested_form(text: str) -> RequestedForm | None:
    """The form the user text asks for, or None when it leaves the form to the model."""
    cipai = _cipai_in(text)
    if cipai is not None:
        return RequestedForm("词", cipai)
    ptype = _type_in(text)
    return RequestedForm(ptype) if ptype else None


def recorded_form(annotation: Annotation) -> RequestedForm | None:
    """The form of a recorded poem (None for an unfit answer)."""
    if not annotation.create_condition or not annotation.poem_type:
        return None
    if annotation.poem_type != "词":
        return RequestedForm(annotation.poem_type)
    from poemlib.meter import parse_cipai

    return RequestedForm("词", parse_cipai(annotation.poem_title))


def fits(requested: RequestedForm, recorded: RequestedForm) -> bool:
    """True when the recorded poem is of the requested form (a bare 词 request takes any 词牌)."""
    if requested.poem_type != recorded.poem_type:
        return False
    return requested.cipai is None or requested.cipai == recorded.cipai
