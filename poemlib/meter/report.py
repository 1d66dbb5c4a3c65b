"""The 格律 report: verdicts, violations and per-character marks (JSON-serialisable, stored by clean under `meter`)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, Field

Category = Literal["form", "tone", "rhyme"]
Mark = Literal["平", "仄", "either", "unknown"]

# Every rule a violation may name, with what it means.
RULES: dict[str, str] = {
    "句数": "the poem has the wrong number of lines for its form",
    "字数": "a line has the wrong number of characters for its form",
    "词牌句式": "the 词's 句 lengths do not fit its 词牌",
    "分片": "the 词 has a different number of stanzas (片) from its 词牌",
    "二四六分明": "positions 2, 4 (and 6) of a line must alternate 平/仄",
    "失对": "the second line of a couplet must be the tonal opposite of the first at position 2",
    "失粘": "the first line of a couplet must match the tone of the line before it at position 2",
    "孤平": "a 平-ending line with a single 平 besides the rhyme (仄平仄仄平), not rescued",
    "三平尾": "a line ends with three 平 characters",
    "仄收": "a non-rhyming (odd) line must end in 仄",
    "平收": "a rhyming (even) line must end in 平",
    "格式不合": "the form is broken, so the tone pattern of the form cannot hold",
    "出韵": "a rhyme character is outside the poem's rhyme group",
    "押仄声韵": "a rhyme position ends in a 仄 character (近体诗 rhyme in 平声)",
    "重韵": "the same character is used twice as a rhyme",
    "词谱平仄": "a character of a 词 has the tone opposite to the 平 or 仄 its 词谱 asks for at that position",
}


class Violation(BaseModel):
    """One broken rule, located at a line (1-based) and a position in it (1-based) where that applies."""

    category: Category
    rule: str
    line: int | None = None
    position: int | None = None
    char: str | None = None
    message: str

    def short(self) -> str:
        """Compact one-line form for tables: 'L3P2 失粘 君'."""
        where = f"L{self.line}" if self.line else ""
        where += f"P{self.position}" if self.position else ""
        return " ".join(part for part in (where, self.rule, self.char or "") if part)


class MeterReport(BaseModel):
    """Result of checking one poem against the form it claims."""

    poem_type: str
    mode: Literal["pingshui", "xinyun"]
    title: str | None = None
    lines: list[str] = Field(default_factory=list, description="the 句 as read, punctuation removed")
    stanza_sizes: list[int] = Field(default_factory=list, description="number of 句 in each stanza")
    form_ok: bool | None = None
    tone_ok: bool | None = None
    rhyme_ok: bool | None = None
    violations: list[Violation] = Field(default_factory=list)
    template: str | None = Field(default=None, description="matched 近体 template, or 词牌 and its variant")
    template_lines: list[str] = Field(default_factory=list, description="the standard 平仄 pattern of each line")
    cipai: str | None = None
    rhyme_group: str | None = None
    rhyme_chars: list[str] = Field(default_factory=list)
    rhyme_positions: list[tuple[int, int]] = Field(
        default_factory=list, description="0-based (line, position) of every rhyme slot of the form (empty in reports stored before)"
    )
    marks: list[list[Mark]] = Field(default_factory=list, description="per character: 平, 仄, either or unknown")
    uncertain: list[str] = Field(default_factory=list, description="characters read with modern Mandarin (not in 平水韵 table)")
    notes: list[str] = Field(default_factory=list, description="accepted licences (拗救, 特定句式, 借邻韵) and why a check is not applicable")

    @property
    def ok(self) -> bool:
        """True when no applicable check failed (None counts as not failed)."""
        return self.form_ok is not False and self.tone_ok is not False and self.rhyme_ok is not False

    def marks_text(self) -> str:
        """Marks as one compact string per line ('中' for either, '？' for unknown), lines joined by '/'."""
        symbol = {"平": "平", "仄": "仄", "either": "中", "unknown": "？"}
        return "/".join("".join(symbol[m] for m in line) for line in self.marks)


_Model = TypeVar("_Model", bound=BaseModel)


def trusted(cls: type[_Model], values: dict[str, Any]) -> _Model:
    """A model from values the engine built itself, already of the field types (fresh lists, no tuples for lists).

    Like `model_construct`, but without its per-field Python machinery: validating ~8 violations and ~60 marks
    per poem was most of the engine's time. Missing fields take their defaults; the fields set are the keys given.
    """
    defaults, factories = _FIELDS.get(cls) or _field_defaults(cls)
    data = defaults.copy()  # every field, in declaration order
    for name, factory in factories:
        if name not in values:
            data[name] = factory()
    data.update(values)
    return _bare(cls, data, set(values))


_set = object.__setattr__


def _bare(cls: type[_Model], data: dict[str, Any], fields_set: set[str]) -> _Model:
    """An instance of cls holding data as its fields, with pydantic's bookkeeping slots set and nothing validated."""
    model = cls.__new__(cls)
    # Filling the instance's own dict is cheaper than replacing it (CPython keeps a new object's dict inline).
    model.__dict__.update(data)
    _set(model, "__pydantic_fields_set__", fields_set)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_FIELDS: dict[type, tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}


def _field_defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """Every field's default (None where a factory makes it) in order, and the (name, factory) pairs (once per class)."""
    fields = cls.model_fields
    defaults = {name: None if field.default_factory else field.default for name, field in fields.items()}
    factories = tuple((name, field.default_factory) for name, field in fields.items() if field.default_factory)
    found = _FIELDS[cls] = (defaults, factories)
    return found


# Every violation has all six fields set, so they share one fields-set: pydantic only ever adds a field name to it
# (assignment) or copies it (model_copy), and adding a name already there changes nothing.
_VIOLATION_FIELDS = {"category", "rule", "line", "position", "char", "message"}


def violation(category: Category, rule: str, line: int | None, position: int | None, char: str | None, message: str) -> Violation:
    """A Violation of engine-built values (all six fields set), without validation (a 词 may have dozens)."""
    fields = {"category": category, "rule": rule, "line": line, "position": position, "char": char, "message": message}
    return _bare(Violation, fields, _VIOLATION_FIELDS)


def _fields_of(model: BaseModel) -> dict[str, Any]:
    """A nested model's fields, for orjson (pydantic keeps a model's field values, in declaration order, in its __dict__)."""
    return model.__dict__


def report_json(report: MeterReport) -> bytes:
    """The report as compact UTF-8 JSON: the bytes pydantic's dump_json gives, rendered by orjson in about half the time."""
    # Every field is a str, bool, int, None, list or tuple of those, or a Violation of them: nothing pydantic would
    # render differently from orjson (tests/meter/test_report_build.py holds the two to the same bytes).
    return orjson.dumps(report.__dict__, default=_fields_of)


def passes(report: MeterReport | dict) -> int:
    """Number of meter checks passed (form, tone, rhyme); clean's 'best' dedupe keeps the version with most."""
    if isinstance(report, MeterReport):
        values = (report.form_ok, report.tone_ok, report.rhyme_ok)
    else:
        values = (report.get("form_ok"), report.get("tone_ok"), report.get("rhyme_ok"))
    return sum(value is True for value in values)
