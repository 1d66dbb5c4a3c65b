"""Reports built without validation (`trusted`, `violation`) are the reports validation would build."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from poemlib.meter import MeterReport, Violation, check
from poemlib.meter.report import report_json, trusted, violation

from .ci_texts import CANONICAL_CI
from .report_equivalence import speed_module

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


def test_report_json_is_pydantics_json() -> None:
    speed = speed_module()  # benchmarks/meter_speed.py: every type, broken ones, 词 of the whole 词谱
    calls = [(*poem, mode) for poem in _POEMS for mode in ("pingshui", "xinyun")]
    calls += [(*poem, "pingshui") for poem in speed.make_poems(600, seed=11)]
    calls += [(*poem, "xinyun") for poem in speed.make_poems(200, seed=12)]
    calls += [("词", text, title, "pingshui") for text, title in speed.make_ci(300, seed=13)]
    calls += [("七言绝句", "風急天高猿嘯哀，渚清沙白鳥飛迴。無邊落木蕭蕭下，不盡長江滾滾來。", "《登高》\n\"x\"", "pingshui")]
    reports = [check(*call) for call in calls]
    reports.append(MeterReport.model_validate(reports[0].model_dump()))  # a validated report, not an engine-built one
    pydantic_json = TypeAdapter(MeterReport).dump_json
    assert sum(bool(r.violations) for r in reports) > 500 and any(r.notes for r in reports) and any(r.uncertain for r in reports)
    for call, report in zip(calls, reports):
        assert report_json(report) == pydantic_json(report), call
