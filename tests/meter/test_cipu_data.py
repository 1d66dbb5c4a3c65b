"""The committed 词谱 resource: what loads, names and aliases, and that it is what scripts/build_cipu.py makes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from poemlib.meter import CIPAI_NAMES, check
from poemlib.meter.cipai import CIPU_PATH, load_cipai, load_cipu, parse_cipai

ROOT = Path(__file__).resolve().parents[2]
SHARED_CIPU = ROOT.parent / "shared" / "cipu"


def test_every_cipai_and_nearly_every_ti_loads() -> None:
    counts = load_cipu()["counts"]
    assert (counts["cipai_in"], counts["ti_in"]) == (817, 2294)
    table = load_cipai()
    assert len(table) == 817
    n_ti = sum(1 for c in table.values() for v in c.variants if not v.label.startswith("龙谱"))
    assert n_ti == 2294 - len(counts["ti_skipped"]) >= 2290
    assert sum(1 for c in table.values() for v in c.variants if v.label.startswith("龙谱")) >= 163


def test_each_ti_is_consistent() -> None:
    for cipai in load_cipai().values():
        for v in cipai.variants:
            assert set(v.pattern) <= set("平仄中"), (cipai.name, v.name)
            assert sum(n for n, _ in v.pieces) == v.chars, (cipai.name, v.name)
            assert all(0 <= abs(p) < v.chars for group in v.rhymes for p in group), (cipai.name, v.name)
            assert sum(st[0].total for st in v.stanzas) == v.chars and len(v.stanzas) == v.pian


def test_aliases_and_single_or_double_stanza() -> None:
    for alias in ("金缕曲", "乳燕飞", "贺新郎"):
        assert parse_cipai(alias) == "贺新郎"
    assert parse_cipai("江神子·记梦") == "江城子"
    assert parse_cipai("凤栖梧") == parse_cipai("鹊踏枝") == parse_cipai("蝶戀花·春景") == "蝶恋花"
    assert parse_cipai("丑奴儿·书博山道中壁") == "采桑子"
    assert parse_cipai("卜算子慢") == "卜算子慢" and parse_cipai("卜算子") == "卜算子"
    assert parse_cipai("春晓") is None
    names = [n for c in load_cipai().values() for n in (c.name, *c.aliases)]
    assert len(names) == len(set(names)), "a name or alias belongs to two 词牌"
    assert {"钗头凤", "水调歌头", "念奴娇", "沁园春"} <= set(CIPAI_NAMES)
    table = load_cipai()
    assert table["如梦令"].kind == "单调" and table["浣溪沙"].kind == "双调"


def test_the_example_of_each_ti_fits_its_cipai() -> None:
    """The 谱's own example 词, punctuated as the 谱 prints it, fits the 词牌 in form."""
    misfits = []
    for cipai in load_cipai().values():
        for v in cipai.variants:
            if not v.origin or sum(1 for ch in v.origin if "\u4e00" <= ch <= "\u9fff") != v.chars:
                continue
            if check("词", v.origin, cipai.name).form_ok is not True:
                misfits.append(f"{cipai.name} {v.name}")
    assert not misfits, misfits[:20]


@pytest.mark.skipif(not SHARED_CIPU.exists(), reason="../shared/cipu (the converter's input) is not present")
def test_committed_resource_is_the_converters_output() -> None:
    spec = importlib.util.spec_from_file_location("build_cipu", ROOT / "scripts" / "build_cipu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.encode(module.build(SHARED_CIPU)) == CIPU_PATH.read_bytes()
    assert (CIPU_PATH.parent / "LICENSE").read_text(encoding="utf-8") == (SHARED_CIPU / "LICENSE").read_text(encoding="utf-8")
