"""`poemlib check --type 词 --title 词牌 TEXT`: the 词 report from the command line, and unknown 词牌 refused."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from .ci_texts import CANONICAL_CI
from .cli import check_app

SHUIDIAO = next(text for title, text, _ in CANONICAL_CI if title == "水调歌头")


def test_ci_report_from_the_command_line() -> None:
    for title in ("水调歌头", "水调歌头·明月几时有", "水調歌頭·丙辰中秋"):
        result = CliRunner().invoke(check_app(), ["check", "--type", "词", "--title", title, SHUIDIAO])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert (data["form_ok"], data["tone_ok"], data["rhyme_ok"]) == (True, True, True)
        assert data["cipai"] == "水调歌头" and data["template"].startswith("水调歌头·")
        assert len(data["marks"]) == len(data["lines"])


def test_unknown_cipai_is_refused_with_the_closest_names() -> None:
    result = CliRunner().invoke(check_app(), ["check", "--type", "词", "--title", "水调哥头·中秋", SHUIDIAO])
    assert result.exit_code != 0
    assert "水调哥头" in result.output and "水调歌头" in result.output
    untitled = CliRunner().invoke(check_app(), ["check", "--type", "词", SHUIDIAO])
    assert untitled.exit_code != 0 and "--title" in untitled.output


def test_stdin_and_a_broken_rhyme() -> None:
    broken = SHUIDIAO.replace("把酒问青天", "把酒问青地")  # a 仄 character of 第三部 where 第七部 平 rhymes
    result = CliRunner().invoke(check_app(), ["check", "--type", "宋词", "--title", "水调歌头", "-"], input=broken)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tone_ok"] is False and data["rhyme_ok"] is False
    found = {(v["rule"], v["line"], v["position"], v["char"]) for v in data["violations"]}
    assert found == {("词谱平仄", 2, 5, "地"), ("出韵", 2, 5, "地")}
