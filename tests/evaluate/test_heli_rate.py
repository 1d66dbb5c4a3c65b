"""05's headline: each backend's 合律率 (form, 平仄 and rhyme all pass), first column of the summary table."""

from __future__ import annotations

import pytest

from poemlib import evaluate as ev
from poemlib.meter import check_annotation
from poemlib.samples import draft_by_name, reference_by_name
from poemlib.schema import GenerationResult


def test_heli_rate_is_the_share_of_poems_passing_every_check_and_leads_the_table(unfit, make_item) -> None:
    drafts, refs = draft_by_name(), reference_by_name()
    names = sorted(drafts)[:4]
    rows = []
    for name in names:
        rows.append(ev.score_result(make_item(name), GenerationResult(backend="teacher", annotation=refs[name], raw_text=refs[name].target_text())))
        rows.append(ev.score_result(make_item(name), GenerationResult(backend="draft", annotation=drafts[name], raw_text=drafts[name].target_text())))
    rows.append(ev.score_result(make_item("x"), GenerationResult(backend="draft", annotation=unfit, raw_text=unfit.target_text())))
    rows.append(ev.score_result(make_item("y"), GenerationResult(backend="draft", raw_text="不是 JSON", error_kind="invalid_json")))
    assert all(check_annotation(refs[n]).ok and not check_annotation(drafts[n]).ok for n in names)
    assert [r["meter_ok"] for r in rows[-2:]] == [None, None]  # no poem: not counted
    table = ev.summarize(rows)
    assert table.columns[0] == ev.HELI_RATE == "合律率"
    assert table.loc["teacher", "合律率"] == 1.0 and table.loc["draft", "合律率"] == 0.0
    half = ev.summarize([{**rows[0], "backend": "m"}, {**rows[1], "backend": "m"}])
    assert half.loc["m", "合律率"] == pytest.approx(0.5)
