"""Scoring answers and the per-backend table, by hand; 格律 columns straight from poemlib.meter."""

from __future__ import annotations

import math

import pytest

from poemlib import evaluate as ev
from poemlib import meter
from poemlib.schema import GenerationResult, PoemRequest, TokenUsage


def test_score_and_summarize_by_hand(poem, unfit, make_item) -> None:
    same = poem.target_text()
    half = poem.model_copy(update={"poem_content": "白日依山尽，\n黄河入海流。", "poem_type": "七言绝句"})
    rows = [
        ev.score_result(make_item("a", PoemRequest(poem_type="五言绝句")), GenerationResult(backend="m", annotation=poem, raw_text=same, latency_s=1.0, usage=TokenUsage(output_tokens=10))),
        ev.score_result(make_item("b", PoemRequest(poem_type="五言绝句")), GenerationResult(backend="m", annotation=half, raw_text=half.target_text(), latency_s=3.0, usage=TokenUsage(output_tokens=20))),
        ev.score_result(make_item("c"), GenerationResult(backend="m", raw_text="平平仄仄", error_kind="invalid_json")),
        ev.score_result(make_item("d"), GenerationResult(backend="m", raw_text='{"poem_type": "散文"}', error_kind="schema_invalid")),
        ev.score_result(make_item("e", PoemRequest(poem_type="七言律诗")), GenerationResult(backend="m", annotation=unfit, raw_text=unfit.target_text())),
    ]
    assert rows[0]["bleu4"] == pytest.approx(1.0) and rows[0]["rouge_l"] == pytest.approx(1.0)
    assert rows[0]["type_ok"] is True and rows[1]["type_ok"] is False
    # half the reference: BP = exp(1 - 20/10); all n-grams match
    assert rows[1]["bleu4"] == pytest.approx(math.exp(1 - 2))
    assert rows[1]["rouge_l"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert rows[2]["bleu4"] == 0.0 and rows[2]["json_ok"] is False
    assert rows[3]["json_ok"] is True and rows[3]["schema_ok"] is False
    assert rows[4]["unfit"] is True and rows[4]["type_ok"] is None and rows[4]["n_violations"] is None

    table = ev.summarize(rows)
    m = table.loc["m"]
    assert m["n"] == 5 and m["n_poems"] == 2
    assert m["json_parse_rate"] == pytest.approx(4 / 5)
    assert m["schema_valid_rate"] == pytest.approx(3 / 5)
    assert m["unfit_rate"] == pytest.approx(1 / 5)
    assert m["type_adherence"] == pytest.approx(1 / 2)  # a: 五言绝句 as asked; b: 七言绝句 when 五言绝句 was asked
    assert m["bleu4"] == pytest.approx((1.0 + math.exp(-1) + 0 + 0 + 0) / 5)  # answers without a poem score 0
    assert m["rouge_l"] == pytest.approx((1.0 + 2 / 3) / 5)
    assert m["chars_mean"] == pytest.approx((20 + 10) / 2)
    assert m["lines_mean"] == pytest.approx((4 + 2) / 2)
    # the two poems: 30 characters, 20 distinct
    assert m["distinct_1"] == pytest.approx(20 / 30)
    assert m["distinct_2"] == pytest.approx(19 / (19 + 9))
    assert m["latency_s"] == pytest.approx((1.0 + 3.0) / 5)
    assert m["output_tokens"] == pytest.approx(30 / 5)


def test_cipai_adherence(make_item) -> None:
    from poemlib.schema import Annotation

    ci = Annotation(create_condition=True, poem_type="词", poem_title="浣溪沙・秋夜", poem_content="一\n二", poem_explanation="e")
    asked = make_item("a", PoemRequest(poem_type="词", cipai="浣溪沙"))
    assert ev.score_result(asked, GenerationResult(backend="m", annotation=ci, raw_text=ci.target_text()))["cipai_ok"] is True
    other = ci.model_copy(update={"poem_title": "如梦令"})
    assert ev.score_result(asked, GenerationResult(backend="m", annotation=other, raw_text=other.target_text()))["cipai_ok"] is False


def test_meter_columns_come_from_the_meter_engine(poem, make_item) -> None:
    row = ev.score_result(make_item("a"), GenerationResult(backend="m", annotation=poem, raw_text=poem.target_text()))
    report = meter.check_annotation(poem)
    assert row["form_ok"] == report.form_ok and row["tone_ok"] == report.tone_ok and row["rhyme_ok"] == report.rhyme_ok
    assert row["n_violations"] == len(report.violations)
    assert row["_report"] == report
    assert row["_meter"]["lines"] == ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    assert [len(m) for m in row["_meter"]["marks"]] == [5, 5, 5, 5]
    assert {"平", "仄"} <= {mark for line in row["_meter"]["marks"] for mark in line}


def test_a_poem_the_meter_cannot_read_is_a_finding(make_item) -> None:
    from poemlib.schema import Annotation

    odd = Annotation.model_construct(create_condition=True, poem_type="散曲", poem_title="t", poem_content="一二三", poem_explanation="e")
    row = ev.score_result(make_item("a"), GenerationResult.model_construct(backend="m", annotation=odd, raw_text="{}", error_kind=None,
                                                                           error_message=None, latency_s=0.0, usage=TokenUsage()))
    assert row["meter_error"] and "散曲" in row["meter_error"]
    assert row["form_ok"] is None and row["_violations"] == []
