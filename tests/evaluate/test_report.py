"""report.html draws every answer through poemlib.render: tones, violations with their rule, badges, failures."""

from __future__ import annotations

import types as pytypes

from poemlib import evaluate as ev
from poemlib import meter
from poemlib.backends import BackendStatus
from poemlib.schema import GenerationResult, PoemRequest


def _page(tmp_path, items, rows, names) -> str:
    backends = {n: pytypes.SimpleNamespace(label=f"{n} model") for n in names}
    statuses = {n: BackendStatus(name=n, state="ready", detail=f"{n} detail", ready=True) for n in names}
    summary = ev.summarize(rows, names)
    path = ev.write_report(tmp_path / "report.html", items, rows, summary, backends, statuses, [], data_label="photos/")
    return path.read_text(encoding="utf-8")


def test_report_marks_tones_violations_and_scores(tmp_path, poem, unfit, make_item) -> None:
    broken = poem.model_copy(update={"poem_content": "白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层阁。"})
    report = meter.check_annotation(broken)
    located = [v for v in report.violations if v.line and v.position]
    assert located, "the fixture poem must break a located rule"
    items = [make_item("a.jpg", PoemRequest(poem_type="五言绝句")), make_item("b.jpg"), make_item("c.jpg")]
    answers = [
        GenerationResult(backend="m", annotation=broken, raw_text=broken.target_text()),
        GenerationResult(backend="m", annotation=unfit, raw_text=unfit.target_text()),
        GenerationResult(backend="m", raw_text='{"poem_title": "半', error_kind="truncated", error_message="cut"),
    ]
    rows = [ev.score_result(item, answer) for item, answer in zip(items, answers)]
    html = _page(tmp_path, items, rows, ["m"])

    assert html.count('class="item"') == 3
    assert html.count("data:image/jpeg;base64,") == 3
    assert "m model" in html and "m detail" in html and "data photos/" in html
    # the poem: every character coloured by its tone, the broken rule's character marked with the rule as tooltip
    assert html.count('class="ch tone-') >= 2 * 20  # the answer and the reference, 20 characters each
    assert "tone-ping" in html and "tone-ze" in html
    assert 'violation"' in html and f"{located[0].rule}: {located[0].message}" in html
    assert "平仄" in html and "押韵" in html and "体裁 ✓ (as asked)" in html
    assert f"BLEU {rows[0]['bleu4']:.2f} · R-L {rows[0]['rouge_l']:.2f}" in html
    # the unfit verdict and the failure with its raw answer
    assert "不宜入诗" in html and "这是一张图表。" in html
    assert 'data-error-kind="truncated"' in html and "{&quot;poem_title&quot;: &quot;半" in html
    # the reference poem drawn by the same renderer
    assert html.count("登鹳雀楼") >= 2 and "card-label\">reference" in html


def test_meter_columns_drive_the_drawing(poem, make_item) -> None:
    """The row's report object is what the renderer colours: one span per character, lines as written."""
    from poemlib import render

    row = ev.score_result(make_item("a"), GenerationResult(backend="m", annotation=poem, raw_text=poem.target_text()))
    drawn = render.poem_lines_html(poem.poem_content, row["_report"])
    assert drawn.count('class="ch ') == 20 and drawn.count('class="poem-line') == 4
    assert "tone-ping" in drawn and "tone-ze" in drawn
    assert ev.score_result(make_item("b"), GenerationResult(backend="m", raw_text="x", error_kind="invalid_json"))["_report"] is None
