"""The one poem renderer: a poem's lines coloured 平/仄 with violations and rhyme marked, and its 格律 badges.

One CSS vocabulary (poemlib/resources/render/poem.css, `stylesheet()`): `.poem-body .poem-line .ch .tone-ping
.tone-ze .tone-either .tone-unknown .rhyme .violation .punct`, `.meter-badges .meter-badge .meter-ok .meter-fail
.meter-na .meter-info`, `.violations`, `.tone-legend`. Used by annotate's tables, the evaluation report and the demo.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.meter import MeterReport

MARK_CLASSES = {"平": "tone-ping", "仄": "tone-ze", "either": "tone-either", "unknown": "tone-unknown"}
MARK_NAMES = {"平": "平", "仄": "仄", "either": "可平可仄", "unknown": "读音未知"}


def escape(value: Any) -> str:
    """HTML-escape any value (quotes too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


_e = escape


def badge_html(kind: str, text: str, css: str, title: str = "") -> str:
    """One 格律 badge."""
    tip = f' title="{_e(title)}"' if title else ""
    return f'<span class="meter-badge {css}" data-check="{_e(kind)}"{tip}>{_e(text)}</span>'


def _verdictbadge_html(kind: str, name: str, value: bool | None, failures: int, extra: str = "", title: str = "") -> str:
    """✓ / ✗ (n) / — for one check."""
    if value is True:
        return badge_html(kind, f"{name} ✓{(' ' + extra) if extra else ''}", "meter-ok", title)
    if value is False:
        count = f" {failures}" if failures else ""
        return badge_html(kind, f"{name} ✗{count}", "meter-fail", title)
    return badge_html(kind, f"{name} —", "meter-na", title or "not applicable / not checked")


def meter_badges_html(report: MeterReport | None) -> str:
    """The 格律 badges of a report: form, 平仄, rhyme, template and rhyme scheme."""
    if report is None:
        return f'<div class="meter-badges">{badge_html("meter", "格律 未检 not checked", "meter-na")}</div>'
    by_cat: dict[str, int] = {}
    for v in report.violations:
        by_cat[v.category] = by_cat.get(v.category, 0) + 1
    form_name = "词牌" if report.poem_type == "词" else "体式"
    notes = "; ".join(report.notes)
    badges = [
        _verdictbadge_html("form", form_name, report.form_ok, by_cat.get("form", 0), title=notes if report.form_ok is None else ""),
        _verdictbadge_html("tone", "平仄", report.tone_ok, by_cat.get("tone", 0), title=notes if report.tone_ok is None else ""),
        _verdictbadge_html("rhyme", "押韵", report.rhyme_ok, by_cat.get("rhyme", 0), extra=report.rhyme_group or ""),
    ]
    if report.template:
        badges.append(badge_html("template", report.template, "meter-info"))
    badges.append(badge_html("mode", "平水韵" if report.mode == "pingshui" else "中华新韵", "meter-info"))
    return f'<div class="meter-badges">{"".join(badges)}</div>'


def tone_legend_html() -> str:
    """Which colour means what."""
    return (
        '<div class="tone-legend"><span class="tone-ping">平</span> · <span class="tone-ze">仄</span> · '
        '<span class="tone-either">可平可仄</span> · <span class="ch violation">违律</span> · '
        '<span class="ch rhyme">韵脚</span></div>'
    )


def poem_lines_html(content: str, report: MeterReport | None = None, *, vertical: bool = False) -> str:
    """The poem as written (line by line, stanza breaks kept), each character coloured by its 平/仄 mark.

    The report's lines are the poem with punctuation removed, so its characters are matched to the written text
    in order; violations with a position are highlighted, a violation of a whole line marks the line.
    """
    flat: list[tuple[int, int, str]] = []
    marks: list[list[str]] = []
    point_v: dict[tuple[int, int], list[str]] = {}
    line_v: dict[int, list[str]] = {}
    rhyme_at: set[tuple[int, int]] = set()
    template: list[str] = []
    if report is not None:
        marks = [list(m) for m in report.marks]
        template = list(report.template_lines)
        for li, line in enumerate(report.lines):
            flat.extend((li, pi, ch) for pi, ch in enumerate(line))
        rhyme_at = _rhyme_slots(report)
        for v in report.violations:
            message = f"{v.rule}: {v.message}"
            if v.line and v.position:
                point_v.setdefault((v.line - 1, v.position - 1), []).append(message)
            elif v.line:
                line_v.setdefault(v.line - 1, []).append(message)

    k = 0
    rows: list[str] = []
    text = content.replace("\r\n", "\n").replace("\r", "\n").strip()
    previous_blank = False
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line:
            if rows and not previous_blank:
                rows.append('<div class="stanza-break"></div>')
            previous_blank = True
            continue
        previous_blank = False
        spans: list[str] = []
        line_indices: set[int] = set()
        for ch in line:
            if k < len(flat) and ch == flat[k][2]:
                li, pi, _ = flat[k]
                k += 1
                line_indices.add(li)
                mark = marks[li][pi] if li < len(marks) and pi < len(marks[li]) else "unknown"
                classes = ["ch", MARK_CLASSES.get(mark, "tone-unknown")]
                tips = [MARK_NAMES.get(mark, mark)]
                if li < len(template) and pi < len(template[li]):
                    tips.append(f"格律 {template[li][pi]}")
                if (li, pi) in rhyme_at:
                    classes.append("rhyme")
                    tips.append("韵脚")
                if (li, pi) in point_v:
                    classes.append("violation")
                    tips.extend(point_v[(li, pi)])
                spans.append(f'<span class="{" ".join(classes)}" title="{_e(" · ".join(tips))}">{_e(ch)}</span>')
            else:
                spans.append(f'<span class="punct">{_e(ch)}</span>')
        line_msgs = [m for li in sorted(line_indices) for m in line_v.get(li, [])]
        cls = "poem-line has-violation" if line_msgs else "poem-line"
        tip = f' title="{_e(" · ".join(line_msgs))}"' if line_msgs else ""
        rows.append(f'<div class="{cls}"{tip}>{"".join(spans)}</div>')
    body_cls = "poem-body vertical" if vertical else "poem-body"
    return f'<div class="{body_cls}">{"".join(rows)}</div>'


def _rhyme_slots(report: MeterReport) -> set[tuple[int, int]]:
    """0-based (line, position) of the rhyme characters: the report's rhyme slots (the 词谱's for a 词).

    Reports stored before `rhyme_positions` existed fall back to the 近体 rule (first and even lines ending in a
    rhyme character).
    """
    positions = getattr(report, "rhyme_positions", None)
    if positions:
        return {(int(li), int(pi)) for li, pi in positions}
    return {
        (li, len(line) - 1) for li, line in enumerate(report.lines) if line and line[-1] in report.rhyme_chars and (li % 2 == 1 or li == 0)
    }


def violations_html(report: MeterReport | None, limit: int = 8) -> str:
    """The broken rules, one per line (at most `limit`)."""
    if report is None or not report.violations:
        return ""
    items = [f"<li><b>{_e(v.short())}</b> — {_e(v.message)}</li>" for v in report.violations[:limit]]
    more = len(report.violations) - limit
    if more > 0:
        items.append(f"<li>… {more} more</li>")
    return f'<ul class="violations">{"".join(items)}</ul>'
