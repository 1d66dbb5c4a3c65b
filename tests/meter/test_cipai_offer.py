"""The 词牌 the annotate guide and the instruction pool offer are 词牌 the 格律 engine knows and checks."""

from __future__ import annotations

import re

from poemlib.config import RESOURCES_DIR
from poemlib.instructions import common_cipai, render_instruction, request_matches
from poemlib.meter import check, parse_cipai
from poemlib.schema import Annotation, PoemRequest

GUIDE = (RESOURCES_DIR / "prompts" / "guide_v1.md").read_text(encoding="utf-8")


def test_guide_and_pool_offer_the_same_known_cipai() -> None:
    in_guide = re.findall(r"^\d+\. \*\*(.+?)\*\*", GUIDE, flags=re.MULTILINE)
    cipai = [n for n in in_guide if parse_cipai(n) == n]
    assert len(cipai) >= 50 and len(cipai) == len(set(cipai))
    assert common_cipai() == cipai
    for name in ("贺新郎", "沁园春", "永遇乐", "雨霖铃", "十六字令"):
        assert name in cipai and f"「{name}」" in render_instruction(PoemRequest(cipai=name))


def test_guide_lengths_are_the_engines() -> None:
    """Each guide entry's character count is the length of a 体 the engine would accept for that 词牌."""
    from poemlib.meter.cipai import load_cipai

    for name, chars in re.findall(r"^\d+\. \*\*(.+?)\*\*（(?:又名[^，]+，)?(\d+) 字", GUIDE, flags=re.MULTILINE):
        if parse_cipai(name) == name:
            assert int(chars) in {v.chars for v in load_cipai()[name].variants}, name


def test_a_request_by_alias_is_met_by_the_canonical_cipai() -> None:
    text = "少年不识愁滋味，爱上层楼。爱上层楼，为赋新词强说愁。\n\n而今识尽愁滋味，欲说还休。欲说还休，却道天凉好个秋。"
    annotation = Annotation(create_condition=True, poem_type="词", poem_title="采桑子·书博山道中壁", poem_content=text, poem_explanation="x")
    assert request_matches(PoemRequest(poem_type="词", cipai="丑奴儿"), annotation)
    assert not request_matches(PoemRequest(poem_type="词", cipai="浣溪沙"), annotation)
    assert check("词", text, annotation.poem_title).ok
