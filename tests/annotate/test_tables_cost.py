"""The store as tables: one row per image, poems as cards through poemlib.render, and the cost table."""

from __future__ import annotations

import hashlib

import pytest

from poemlib import annotate as ann
from poemlib.samples import reference_by_name
from poemlib.schema import AnnotationRecord, Status, TokenUsage

REFS = reference_by_name()


def _record(name: str, *, usage: TokenUsage | None = None, source: str | None = None, **fields) -> AnnotationRecord:
    ref = REFS[name]
    status = Status.ok if ref.create_condition else Status.unfit
    base = {"image_sha256": hashlib.sha256(name.encode()).hexdigest(), "image_paths": [name], "status": status, "annotation": ref, "model": "gemini-2.5-pro", "prompt_version": "v1+test"}
    return AnnotationRecord.model_validate({**base, "usage": usage or TokenUsage(), "source": source, **fields})


def test_store_frame_has_one_row_per_current_record(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    failed = _record("dahlia_flower.jpg", status=Status.failed, annotation=None, error_kind="safety", error_message="answer stopped")
    records = [_record("cat_chelsea.jpg", image_paths=["cat_chelsea.jpg", "copy/cat.jpg"]), _record("text_page_scan.jpg"), failed]
    store.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    frame = ann.store_frame(store).set_index("image")
    cat = REFS["cat_chelsea.jpg"]
    assert frame.loc["cat_chelsea.jpg", "also"] == "copy/cat.jpg" and frame.loc["cat_chelsea.jpg", "poem_title"] == cat.poem_title
    assert frame.loc["cat_chelsea.jpg", "reason_or_first_line"] == cat.lines()[0]
    assert frame.loc["text_page_scan.jpg", "status"] == "unfit" and frame.loc["text_page_scan.jpg", "reason_or_first_line"] == REFS["text_page_scan.jpg"].poem_content
    assert frame.loc["dahlia_flower.jpg", "error_kind"] == "safety" and frame.loc["dahlia_flower.jpg", "reason_or_first_line"] == "answer stopped"


def test_poems_html_renders_poems_only_through_the_one_renderer() -> None:
    from poemlib import render

    poems = [name for name, ref in REFS.items() if ref.create_condition]
    records = [_record("text_page_scan.jpg")] + [_record(name) for name in poems[:3]]
    page = ann.poems_html(records, limit=2)
    assert page.startswith("<style>") and render.stylesheet() in page  # one stylesheet, inlined for the notebook
    assert page.count('class="poem-card ') == 2 and '<div class="poem-cards">' in page
    for name in poems[:2]:
        assert REFS[name].poem_title in page and name in page
    assert REFS[poems[2]].poem_title not in page and "text_page_scan.jpg" not in page  # limit, and unfit verdicts are left out


def test_cost_frame_prices_batch_at_the_discount_and_matches_usage_cost() -> None:
    prices = ann.Prices()
    usage = TokenUsage(prompt_tokens=3000, cached_tokens=1000, output_tokens=400, thinking_tokens=600)
    online, batch = _record("cat_chelsea.jpg", usage=usage), _record("coffee_cup.jpg", usage=usage, source="batch:batches/1")
    frame = ann.cost_frame([online, batch], prices).set_index("item")
    assert list(frame.index) == ["input (uncached)", "input (cached)", "output", "thinking", "total"]
    assert frame.loc["input (uncached)", "tokens"] == 4000 and frame.loc["thinking", "tokens"] == 1200
    assert frame.loc["input (uncached)", "usd"] == pytest.approx(2000 * 1.25 / 1e6 * 1.5)  # online full price + batch at half
    expected = ann.usage_cost(usage, prices) + ann.usage_cost(usage, prices, batch=True)
    assert frame.loc["total", "usd"] == pytest.approx(expected, abs=1e-6)
    assert ann.usage_cost(usage, prices, batch=True) == pytest.approx(ann.usage_cost(usage, prices) * prices.batch_discount)
    long = TokenUsage(prompt_tokens=prices.long_context_tokens + 1)
    assert ann.usage_cost(long, prices) == pytest.approx((prices.long_context_tokens + 1) * prices.input_long / 1e6)
