"""Reports built without validation (`trusted`, `violation`) are the reports validation would build."""

from __future__ import annotations

import pytest

from poemlib.meter import MeterReport, Violation, check
from poemlib.meter.report import trusted, violation

from .ci_texts import CANONICAL_CI

_POEMS = [
    ("七言律诗", "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。", None),
    ("七言绝句", "山中日暮鸟飞还，一路秋风过远关。巨龙卧波衔远岸，孤云独去水潺潺。", None),
    ("五言绝句", "白日依山尽，黄河入海流。欲穷千里目", None),
    ("词", CANONICAL_CI[4][1], CANONICAL_CI[4][0]),
    ("词", "一二三四五六七", "没有这个词牌"),
]


@pytest.mark.parametrize(("ptype", "content", "title"), _POEMS)
def test_checked_report_equals_its_validated_copy(ptype: str, content: str, title: str | None) -> None:
    report = check(ptype, content, title)
    validated = MeterReport.model_validate(report.model_dump())
    assert report == validated
    assert report.model_dump_json() == validated.model_dump_json()
    assert all(type(v) is Violation for v in report.violations)


def test_trusted_fills_defaults_with_fresh_lists() -> None:
    a = trusted(MeterReport, {"poem_type": "词", "mode": "pingshui"})
    b = trusted(MeterReport, {"poem_type": "词", "mode": "pingshui"})
    assert a == MeterReport(poem_type="词", mode="pingshui")
    assert a.model_fields_set == {"poem_type", "mode"}
    a.lines.append("x")
    assert b.lines == []


def test_violation_equals_validated() -> None:
    built = violation("tone", "失粘", 3, 2, "君", "line 3 position 2 should match line 2 position 2")
    assert built == Violation(category="tone", rule="失粘", line=3, position=2, char="君", message=built.message)
    assert built.short() == "L3P2 失粘 君"


def test_bad_title_type_is_still_rejected() -> None:
    with pytest.raises(ValueError, match="title"):
        check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", 12)  # type: ignore[arg-type]
