"""Rhyme slots in the report (`rhyme_positions`) and the renderer's rhyme marks: the 词谱's positions for a 词."""

from __future__ import annotations

import re

from poemlib.meter import MeterReport, check
from poemlib.render.poem import poem_lines_html

from .ci_texts import CANONICAL_CI

_RHYME_SPAN = re.compile(r'<span class="ch [^"]*\brhyme\b[^"]*"[^>]*>(.)</span>')


def _text(title: str) -> str:
    """The canonical text of a 词 in ci_texts by its title."""
    return next(text for name, text, _ in CANONICAL_CI if name == title)


def _marked(content: str, report: MeterReport) -> str:
    """The characters the renderer marks as rhymes, in order."""
    return "".join(_RHYME_SPAN.findall(poem_lines_html(content, report)))


def test_ci_with_huanyun_marks_the_rhymes_of_the_pu() -> None:
    """菩萨蛮 changes rhyme every couplet: every 句 end rhymes, also lines 3 and 5 the 近体 rule skips."""
    text = _text("菩萨蛮")
    report = check("词", text, "菩萨蛮")
    assert report.rhyme_ok and "→" in report.rhyme_group
    assert report.rhyme_positions == [(i, len(line) - 1) for i, line in enumerate(report.lines)]
    assert _marked(text, report) == "织碧楼愁立急程亭"


def test_ci_non_rhyming_line_end_is_not_marked() -> None:
    """清平乐: the 谱 rhymes 仄 then 平; the 7th 句 (…亡赖) does not rhyme, its first 句 (茅檐低小) does."""
    text = _text("清平乐·村居")
    report = check("词", text, "清平乐·村居")
    assert _marked(text, report) == "小草好媪东笼蓬"
    assert (6, 5) not in report.rhyme_positions and (0, 3) in report.rhyme_positions


def test_regular_verse_rhyme_positions() -> None:
    """A 七言绝句 with a rhyming first line: lines 1, 2 and 4; 不入韵 first line: lines 2 and 4 only."""
    poem = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    report = check("七言绝句", poem)
    assert report.rhyme_positions == [(0, 6), (1, 6), (3, 6)]
    assert _marked(poem, report) == "间还山"
    plain = check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。")
    assert plain.rhyme_positions == [(1, 4), (3, 4)]


def test_reports_stored_before_fall_back_to_the_regular_rule() -> None:
    """A stored report without rhyme_positions (and its JSON round trip) still gets rhyme marks."""
    poem = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    stored = check("七言绝句", poem).model_dump(mode="json")
    assert stored["rhyme_positions"] == [[0, 6], [1, 6], [3, 6]]
    assert _marked(poem, MeterReport.model_validate(stored)) == "间还山"
    del stored["rhyme_positions"]
    old = MeterReport.model_validate(stored)
    assert old.rhyme_positions == []
    assert _marked(poem, old) == "间还山"
