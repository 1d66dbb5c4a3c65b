"""Legacy variants, broken files, 体裁 and path normalisation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from poemlib.clean import clean, legacy_annotation, normalise_path
from tests.clean.data import DENG, HUANXISHA, ZAOFA, gc, read_lines, unfit


def test_legacy_variants_and_broken_files(tmp_path) -> None:
    jsonl = tmp_path / "legacy.jsonl"
    rows = [
        {"generated_content": json.dumps(gc("五绝", "登楼", DENG), ensure_ascii=False), "total_token_count": "321", "image_path": ".\\Train\\\\7.jpg"},
        {"generated_content": {**gc("七言律诗", "x", ZAOFA), "create_condition": "TRUE"}, "image_path": "Train\\8.jpg"},
        {"generated_content": gc("七言古诗", "长歌", ZAOFA), "image_path": "Train\\9.jpg"},  # malformed: not one of our types
    ]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n" + '{"generated_content": {"poem', encoding="utf-8")
    truncated = tmp_path / "truncated.json"
    good = {"generated_content": unfit("纯色背景。"), "image_path": "Val\\3.jpg"}
    truncated.write_text("[" + json.dumps(good, ensure_ascii=False) + ', {"generated_content": {"poem_', encoding="utf-8")
    rep = clean([jsonl, truncated, jsonl], tmp_path / "c.jsonl", None)
    assert [s.format for s in rep.inputs] == ["jsonl (legacy)", "json-list (legacy)", "skipped"]
    assert rep.counts.records_read == 3 and rep.counts.malformed == 3
    reasons = {(m.file, m.index, m.line): m.reason for m in rep.malformed}
    assert "七言古诗" in reasons[(str(jsonl), None, 3)]
    assert "torn" in reasons[(str(jsonl), None, 4)]
    assert (str(truncated), 1, None) in reasons
    assert rep.counts.distinct_images == 3 and rep.counts.ok == 2 and rep.counts.unfit == 1
    assert rep.repairs["poem_type:五绝->五言绝句"] == 1 and rep.repairs["generated_content:JSON string"] == 1
    assert rep.repairs["create_condition:not a JSON bool"] == 1
    assert rep.tokens_read.sum == 321
    paths = sorted(g for row in read_lines(tmp_path / "rejected.jsonl") + read_lines(tmp_path / "c.jsonl") for g in row["image_paths"])
    assert paths == ["Train/7.jpg", "Train/8.jpg", "Val/3.jpg"]


def test_poem_type_and_path_normalisation() -> None:
    """体裁 variants go through meter.infer_poem_type (repairs counted); paths get '/' and keep their case."""
    repairs: Counter = Counter()

    def ptype(value, title="题", content=ZAOFA):
        return legacy_annotation(gc(value, title, content), repairs).poem_type

    assert ptype("七言絕句") == "七言绝句"
    assert ptype("七绝") == "七言绝句"
    assert ptype("詞", content=HUANXISHA) == "词"
    assert ptype("浣溪沙", title="浣溪沙·春恨", content=HUANXISHA) == "词"
    assert ptype("绝句", content=DENG) == "五言绝句"
    assert repairs["poem_type:七绝->七言绝句"] == 1 and repairs["poem_type:词牌 given as type->词"] == 1
    assert repairs["poem_type:绝句->inferred from lines"] == 1
    with pytest.raises(ValueError, match="poem_type '七言古诗' is not one of 五言绝句"):
        legacy_annotation(gc("七言古诗", "长歌", ZAOFA), repairs)
    assert normalise_path("Train\\12.jpg") == "Train/12.jpg"
    assert normalise_path("./Val\\\\3.JPG") == "Val/3.JPG"  # case kept
