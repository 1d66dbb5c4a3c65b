"""Exact 平水韵 readings (a character keeps its own) and the 词林正韵 API built on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poemlib.meter.cilin import (
    CILIN_PARTS,
    CilinReading,
    cilin_groups,
    cilin_parts,
    cilin_readings,
)
from poemlib.meter.pingshui import group_tone, load_corrections, pingshui_table
from poemlib.meter.readings import EITHER, PING, ZE, pingshui_groups, pingshui_reading


@pytest.mark.parametrize(
    ("ch", "tone", "groups"),
    [
        ("龍", PING, {"上平声二冬"}),  # not 入声 缉
        ("龙", PING, {"上平声二冬"}),
        ("兒", PING, {"上平声四支", "上平声八齐"}),  # not 入声 觉
        ("儿", PING, {"上平声四支", "上平声八齐"}),
        ("頹", PING, {"上平声十灰"}),  # not 入声 屋
        ("維", PING, {"上平声四支"}),  # not 去声 沁
        ("宦", ZE, set()),  # not 上平 支
        ("漢", ZE, set()),  # not 上平 寒
        ("汉", ZE, set()),
    ],
)
def test_spurious_entries_are_gone(ch: str, tone: int, groups: set[str]) -> None:
    reading = pingshui_reading(ch)
    assert reading.tone == tone
    assert set(reading.groups) == groups


def test_the_raw_table_still_has_them_so_the_corrections_do_the_work() -> None:
    raw = pingshui_table(corrected=False)
    assert "入声十四缉" in raw["龍"] and "上平声十四寒" in raw["漢"]
    assert "入声十四缉" not in pingshui_table()["龍"]


@pytest.mark.parametrize(
    ("ch", "foreign"),
    [("畫", "下平声六麻"), ("暗", "下平声十三覃"), ("泛", "上平声一东"), ("乾", "去声十五翰"), ("征", "上声四纸")],
)
def test_a_character_keeps_only_its_own_readings(ch: str, foreign: str) -> None:
    assert foreign not in pingshui_groups(ch)


def test_one_tone_characters_are_no_longer_either() -> None:
    assert pingshui_reading("畫").tone == ZE
    assert pingshui_reading("暗").tone == ZE
    assert pingshui_reading("泛").tone == ZE
    assert pingshui_reading("乾").tone == PING
    assert pingshui_reading("征").tone == PING


def test_a_simplified_character_still_writes_its_traditional_forms() -> None:
    assert pingshui_reading("干").tone == EITHER  # 干 gān (乾) and gàn (幹)
    assert "去声十五翰" in pingshui_groups("干")
    assert pingshui_groups("画") == pingshui_groups("畫")  # not in the table itself: read as 畫
    assert "上平声一东" in pingshui_groups("丰")  # 丰 writes 豐 (一东) as well as its own 二冬


def test_a_bad_correction_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "corrections.json"
    bad.write_text(json.dumps({"remove": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="corrections.json"):
        load_corrections(bad)


def test_cilin_parts_are_the_nineteen() -> None:
    assert len(CILIN_PARTS) == 19 and CILIN_PARTS[0] == "第一部" and CILIN_PARTS[-1] == "第十九部"


@pytest.mark.parametrize(
    ("ch", "expected"),
    [
        ("东", {CilinReading("第一部", "平")}),
        ("看", {CilinReading("第七部", "平"), CilinReading("第七部", "上去")}),
        ("来", {CilinReading("第五部", "平")}),  # 十灰, the 来 half
        ("回", {CilinReading("第三部", "平"), CilinReading("第三部", "上去")}),  # 十灰, the 回 half
        ("门", {CilinReading("第六部", "平")}),  # 十三元, the 门 half
        ("翻", {CilinReading("第七部", "平")}),  # 十三元, the 翻 half
        ("月", {CilinReading("第十八部", "入")}),
        ("去", {CilinReading("第四部", "上去")}),
    ],
)
def test_cilin_readings(ch: str, expected: set[CilinReading]) -> None:
    assert cilin_readings(ch) == expected


def test_cilin_tone_classes_follow_the_rhyme_rule() -> None:
    assert cilin_groups("看", "平") == {"第七部"}
    assert cilin_groups("雪", "入") == {"第十八部"} and cilin_groups("雪", "平") == frozenset()
    assert cilin_parts("看") == {(7, PING), (7, ZE)}
    assert cilin_groups("𠀀") == frozenset()  # unknown character: nothing to rhyme with
    with pytest.raises(ValueError, match="tone class"):
        cilin_groups("东", "仄")


def test_every_pingshui_group_falls_in_a_part_of_its_kind() -> None:
    for ch, groups in pingshui_table().items():
        for reading in cilin_readings(ch):
            number = CILIN_PARTS.index(reading.part) + 1
            assert (number >= 15) == (reading.tone == "入"), (ch, reading)
        assert {group_tone(g) for g in groups} <= {"平", "上", "去", "入"}
        assert cilin_readings(ch), ch
