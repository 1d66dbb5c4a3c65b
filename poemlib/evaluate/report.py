"""report.html: metrics table, plots, judge section, and each photo with every backend's poem side by side.

Poems are drawn by poemlib.render (the one renderer: 平/仄 colours, violations, 格律 badges); the page is the Jinja
template poemlib/resources/evaluate/report.html.j2.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from poemlib import render
from poemlib.config import RESOURCES_DIR
from poemlib.evaluate.items import EvalItem
from poemlib.evaluate.judge import judge_summary
from poemlib.evaluate.scoring import meter_summary
from poemlib.evaluate.settings import load_evaluate_settings
from poemlib.images import BadImageError, jpeg_data_uri, thumbnail_jpeg
from poemlib.io import atomic_write
from poemlib.schema import GenerationResult

TEMPLATE_PATH = RESOURCES_DIR / "evaluate" / "report.html.j2"


@cache
def _template() -> Any:
    """The compiled page template (autoescaped)."""
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(TEMPLATE_PATH.read_text(encoding="utf-8"))


def _thumbnail_uri(path: str | Path, max_side: int = 320) -> str:
    """The photo (EXIF-rotated) as a small JPEG data URI; empty for an unreadable file."""
    try:
        return jpeg_data_uri(thumbnail_jpeg(path, max_side))
    except BadImageError:
        return ""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt_table(df: Any) -> str:
    """A DataFrame as an HTML table with 3 decimals."""
    return df.to_html(classes="metrics", float_format=lambda x: f"{x:.3f}", na_rep="–", border=0)


def _scores_html(row: Mapping[str, Any]) -> str:
    """What the renderer's card does not know: adherence to the request and similarity to the reference."""
    badges = []
    for key, name in (("type_ok", "体裁"), ("cipai_ok", "词牌")):
        if row.get(key) is not None:
            ok = bool(row[key])
            badges.append(render.badge_html(key, f"{name} {'✓' if ok else '✗'} (as asked)", "meter-ok" if ok else "meter-fail"))
    if row.get("bleu4") is not None:
        badges.append(render.badge_html("reference", f"BLEU {row['bleu4']:.2f} · R-L {row['rouge_l']:.2f}", "meter-info",
                                        "character BLEU-4 and ROUGE-L F1 against the reference poem"))
    return f'<div class="meter-badges">{"".join(badges)}</div>' if badges else ""


def cell_html(row: Mapping[str, Any], label: str) -> str:
    """One backend's answer for one photo: poem card with 格律 and scores, the unfit verdict, or the failure."""
    result: GenerationResult = row["_result"]
    if result.annotation is None:
        return render.error_card_html(result, label=label, raw_chars=400)
    footer = _scores_html(row) + render.stats_html(result)
    return render.poem_card_html(result.annotation, row.get("_report"), label=label, key=row["backend"], footer_html=footer)


def reference_html(item: EvalItem) -> str:
    """The reference annotation as a card ('' without one)."""
    if item.reference is None:
        return ""
    report = meter_summary(item.reference).get("report")
    return render.poem_card_html(item.reference, report, label="reference", key="reference")


def _row_positions(rows: Sequence[Mapping[str, Any]]) -> Iterable[tuple[int, Mapping[str, Any]]]:
    """(item index, row) pairs: rows come backend by backend, item order within each."""
    counters: dict[str, int] = {}
    for r in rows:
        i = counters.get(r["backend"], 0)
        counters[r["backend"]] = i + 1
        yield i, r


def _items_html(items: Sequence[EvalItem], rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str], thumb_px: int) -> list[dict[str, Any]]:
    """Per photo: thumbnail, request, reference card and one cell per backend (in backend order)."""
    by_key = {(r["backend"], i): r for i, r in _row_positions(rows)}
    rendered = []
    for i, item in enumerate(items):
        req = item.request.model_dump(exclude_defaults=True)
        cells = [cell_html(by_key[(name, i)], label) for name, label in labels.items() if (name, i) in by_key]
        rendered.append({
            "name": item.name, "thumb": _thumbnail_uri(item.image, thumb_px),
            "request": json.dumps(req, ensure_ascii=False) if req else "generic",
            "reference": reference_html(item), "cells": cells,
        })
    return rendered


def write_report(
    path: Path,
    items: Sequence[EvalItem],
    rows: Sequence[Mapping[str, Any]],
    summary: Any,
    backends: Mapping[str, Any],
    statuses: Mapping[str, Any],
    plots: Sequence[Path],
    *,
    judge_df: Any = None,
    judge_status: str = "skipped",
    data_label: str = "",
) -> Path:
    """report.html: metrics table, plots, judge section, and each photo with every backend's poem side by side."""
    labels = {name: backends[name].label for name in backends}
    judge_tbl = judge_summary(judge_df)
    page = _template().render(
        ncols=len(labels),
        labels=list(labels.values()),
        n_items=len(items),
        created=datetime.now().strftime("%Y-%m-%d %H:%M"),
        data=data_label,
        statuses=[{"name": n, "label": labels.get(n, n), "state": s.state, "detail": s.detail} for n, s in statuses.items()],
        metrics_table=_fmt_table(summary),
        plots=[_png_data_uri(p) for p in plots],
        judge_status=judge_status,
        judge_table=_fmt_table(judge_tbl) if judge_tbl is not None else "",
        stylesheet=render.stylesheet(),
        legend=render.tone_legend_html(),
        items=_items_html(items, rows, labels, load_evaluate_settings().report.thumbnail_px),
    )
    return atomic_write(path, page)
