"""近体 cases the exact readings and rules must catch (issue 12, item 7)."""

from __future__ import annotations

import pytest
from opencc import OpenCC

from poemlib.meter import check


def _faults(report) -> list[tuple[str, int | None, int | None, str | None]]:
    return [(v.rule, v.line, v.position, v.char) for v in report.violations]


def test_polyphonic_rhyme_character_counts_as_ping_for_sanpingwei() -> None:
    report = check("五言绝句", "落日千山静，秋风一叶寒。归舟何处泊，独坐江楼看。")
    assert report.tone_ok is False
    assert ("三平尾", 4, 3, "江") in _faults(report)
    assert report.rhyme_ok is True  # 看 rhymes in 寒


def test_sanpingwei_with_a_one_tone_rhyme_is_unchanged() -> None:
    report = check("五言绝句", "落日千山静，秋风一叶寒。归舟何处泊，独坐江楼栏。")
    assert _faults(report) == [("三平尾", 4, 3, "江")]


def test_an_unrhymed_line_ending_in_a_polyphonic_character_is_not_forced_ping() -> None:
    """看 at the end of an odd (unrhymed) line stays either: 仄 is fine there."""
    report = check("五言绝句", "白日依山看，黄河入海流。欲穷千里目，更上一层楼。")
    assert report.tone_ok is True


def test_long_is_ping_so_the_line_breaks_nian_and_er_si() -> None:
    report = check("七言绝句", "山中日暮鸟飞还，一路秋风过远关。巨龙卧波衔远岸，孤云独去水潺潺。")
    faults = _faults(report)
    assert ("失粘", 3, 2, "龙") in faults
    assert ("二四六分明", 3, 2, "龙") in faults
    assert report.tone_ok is False
    assert report.marks[2][1] == "平"


@pytest.mark.parametrize(
    "text",
    [
        "落日千山静，秋风一叶寒。归舟何处泊，独坐江楼看。",
        "山中日暮鸟飞还，一路秋风过远关。巨龙卧波衔远岸，孤云独去水潺潺。",
    ],
)
def test_traditional_copies_get_the_same_faults(text: str) -> None:
    ptype = "五言绝句" if len(text) < 30 else "七言绝句"
    simple, traditional = check(ptype, text), check(ptype, OpenCC("s2t").convert(text))
    assert [(r, line, pos) for r, line, pos, _ in _faults(traditional)] == [(r, line, pos) for r, line, pos, _ in _faults(simple)]


@pytest.mark.parametrize(
    ("ptype", "text", "char"),
    [
        ("五言绝句", "江南春水暖，山外畫船歸。鷗鷺隨人去，斜陽映釣磯。", "畫"),  # 畫 is 仄 (卦/陌), not 划's 麻
        ("五言绝句", "春山烟雨暗，小径入林深。独坐听风起，归来对素琴。", "暗"),  # 暗 is 仄, not 闇's 覃
        ("五言绝句", "秋水泛孤舟，寒山带远愁。征鸿何处去，明月照江楼。", "泛"),  # 泛 is 仄, not 汎's 东
        ("五言绝句", "北雁南征急，西风落照寒。乾坤一孤客，独立倚栏杆。", "乾"),  # 乾 is 平, not 幹's 翰
    ],
)
def test_one_tone_characters_are_checked(ptype: str, text: str, char: str) -> None:
    """These once borrowed a reading of another character with the same simplified form and read as either."""
    report = check(ptype, text)
    line, pos = next((i, row.index(char)) for i, row in enumerate(report.lines) if char in row)
    assert report.marks[line][pos] == ("平" if char == "乾" else "仄")
