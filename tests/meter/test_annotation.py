"""The one poem-type table (strict and lenient) and the one meter wrapper for annotations."""

from __future__ import annotations

import pytest

from poemlib.meter import (
    MeterCheckError,
    check_annotation,
    infer_poem_type,
    normalise_poem_type,
)
from poemlib.schema import Annotation

LI_BAI = "朝辞白帝彩云间，\n千里江陵一日还。\n两岸猿声啼不住，\n轻舟已过万重山。"
DENG = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def _annotation(**overrides: object) -> Annotation:
    fields = {"create_condition": True, "poem_type": "七言绝句", "poem_title": "早发白帝城", "poem_content": LI_BAI, "poem_explanation": "顺流而下"}
    fields.update(overrides)
    return Annotation(**fields)


def test_normalise_poem_type_is_strict() -> None:
    assert normalise_poem_type("七律") == "七言律诗"
    assert normalise_poem_type(" 五言绝 ") == "五言绝句"
    assert normalise_poem_type("长短句") == "词"
    with pytest.raises(ValueError, match="八言绝句"):
        normalise_poem_type("八言绝句")


def test_infer_poem_type_is_lenient_and_says_what_it_repaired() -> None:
    assert infer_poem_type("七言律诗") == ("七言律诗", None)
    assert infer_poem_type("七言絕句") == ("七言绝句", "poem_type:七言絕句->七言绝句")
    assert infer_poem_type("七绝") == ("七言绝句", "poem_type:七绝->七言绝句")
    assert infer_poem_type("詞")[0] == "词"
    assert infer_poem_type("浣溪沙", title="浣溪沙·春恨") == ("词", "poem_type:词牌 given as type->词")
    assert infer_poem_type("浣溪沙", title="春恨") == (None, None)
    assert infer_poem_type("绝句", content=DENG) == ("五言绝句", "poem_type:绝句->inferred from lines")
    assert infer_poem_type("律诗", content=DENG) == (None, None)  # four lines are not a 律诗
    assert infer_poem_type("七言古诗") == (None, None)
    assert infer_poem_type(None) == (None, None)


def test_check_annotation_reads_models_mappings_and_records_alike() -> None:
    report = check_annotation(_annotation())
    assert report is not None and report.ok and report.template.startswith("七言绝句")
    bare = {"create_condition": True, "poem_type": "七言绝句", "poem_title": "早发白帝城", "poem_content": LI_BAI}
    assert check_annotation(bare) == report
    assert check_annotation({"status": "ok", "annotation": bare}) == report
    xinyun = check_annotation(bare, mode="xinyun")
    assert xinyun is not None and xinyun.mode == "xinyun"


def test_check_annotation_returns_none_when_there_is_no_poem() -> None:
    assert check_annotation(None) is None
    assert check_annotation(_annotation(create_condition=False, poem_type=None, poem_title=None, poem_content="一页文字")) is None
    assert check_annotation({"status": "error", "error": "timeout"}) is None
    assert check_annotation({"create_condition": True, "poem_type": None, "poem_content": "x"}) is None


def test_check_annotation_reports_a_failed_check_as_meter_error() -> None:
    with pytest.raises(MeterCheckError, match=r"^ValueError: unknown poem_type '古风'") as info:
        check_annotation({"create_condition": True, "poem_type": "古风", "poem_content": DENG})
    assert isinstance(info.value.cause, ValueError)
    with pytest.raises(ValueError, match="guangyun"):
        check_annotation(_annotation(), mode="guangyun")


def test_a_broken_poem_is_a_report_not_an_error() -> None:
    report = check_annotation(_annotation(poem_content="白日依山尽"))
    assert report is not None and report.form_ok is False
