"""One poem's meter check through `poemlib.meter.check_annotation`, reduced to what clean counts and writes."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from poemlib.meter import MeterCheckError, check_annotation
from poemlib.meter.report import report_json

_NON_HAN = re.compile(r"[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")

Poem = tuple[str, str, "str | None"]  # (poem type, content, title)
Order = tuple[int, int]  # (input number, position in the file): a record's key


class MeterResult(NamedTuple):
    """A meter report reduced to what clean needs, with the full report kept as JSON text for the output line."""

    json: bytes
    form_ok: bool | None
    tone_ok: bool | None
    rhyme_ok: bool | None
    error: bool
    line_lengths: tuple[int, ...]

    @property
    def passed(self) -> int:
        """How many of form/tone/rhyme passed (poemlib.meter.passes)."""
        return (self.form_ok is True) + (self.tone_ok is True) + (self.rhyme_ok is True)


def meter_result(poem_type: str, content: str, title: str | None, mode: str) -> MeterResult:
    """Check one poem through meter.check_annotation and reduce the report (its JSON kept as UTF-8 bytes)."""
    try:
        report = check_annotation({"poem_type": poem_type, "poem_content": content, "poem_title": title}, mode=mode)
    except MeterCheckError as exc:  # a checker bug must not lose the record; it is flagged and counted
        lines = [_NON_HAN.sub("", line) for line in content.split("\n") if line.strip()]
        error = json.dumps({"error": str(exc)}, ensure_ascii=False).encode("utf-8")
        return MeterResult(error, None, None, None, True, tuple(len(x) for x in lines))
    assert report is not None  # an ok record always carries a type and content
    return MeterResult(
        report_json(report),
        report.form_ok,
        report.tone_ok,
        report.rhyme_ok,
        False,
        tuple(len(line) for line in report.lines),
    )


def meter_batch(keys: list[Any], batch: list[Poem], mode: str) -> tuple[list[Any], list[MeterResult]]:
    """Worker-process entry: (keys, meter results) for a batch of (type, content, title)."""
    return keys, [meter_result(ptype, content, title, mode) for ptype, content, title in batch]


def violation_rules(result: MeterResult) -> set[str]:
    """The distinct rules (e.g. 失粘, 出韵) a poem's violations name, read from the kept report."""
    if result.error:
        return set()
    return {v["rule"] for v in json.loads(result.json).get("violations", [])}
