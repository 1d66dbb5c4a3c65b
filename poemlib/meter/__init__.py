"""格律 engine: does a poem obey the form it claims? 近体诗 form, 平仄 and rhyme by 平水韵 (or 中华新韵); 词 by 词牌.

    from poemlib.meter import check
    report = check("七言绝句", "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。")
    report.form_ok, report.tone_ok, report.rhyme_ok, report.violations
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poemlib.meter.annotation import (
    MeterCheckError,
    annotation_fields,
    check_annotation,
)
from poemlib.meter.poem_types import infer_poem_type, normalise_poem_type
from poemlib.meter.readings import MODES, lines_marks, uncertain_chars
from poemlib.meter.regulated import FORMS, check_regular
from poemlib.meter.report import RULES, MeterReport, Violation, passes, trusted
from poemlib.meter.text import Segment, split_lines, split_stanzas
from poemlib.forms import POEM_TYPES

if TYPE_CHECKING:
    import pandas as pd

    from poemlib.meter.cipai import parse_cipai

__all__ = [
    "CIPAI_NAMES",
    "RULES",
    "MeterCheckError",
    "MeterReport",
    "Violation",
    "add_meter_columns",
    "check",
    "check_annotation",
    "check_records",
    "infer_poem_type",
    "normalise_poem_type",
    "parse_cipai",
    "passes",
    "split_lines",
    "summarise",
]


def __getattr__(name: str) -> Any:
    """The 词牌 names and parse_cipai come from the 词 checker, loaded on first use: a 近体-only run never needs it."""
    if name == "CIPAI_NAMES":
        from poemlib.meter.cipai import cipai_names

        return cipai_names()
    if name == "parse_cipai":
        from poemlib.meter.cipai import parse_cipai

        return parse_cipai
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check(poem_type: str, poem_content: str, title: str | None = None, mode: str = "pingshui") -> MeterReport:
    """Check a poem against the form its type (and, for 词, its title's 词牌) claims."""
    ptype = normalise_poem_type(poem_type)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    stanzas = split_stanzas(poem_content or "")
    segments = stanzas[0] if len(stanzas) == 1 else [seg for stanza in stanzas for seg in stanza]
    fields: dict[str, Any] = {"poem_type": ptype, "mode": mode, "title": title, "stanza_sizes": list(map(len, stanzas))}
    if ptype in FORMS:
        fields.update(check_regular(ptype, segments, mode))
        lines = fields["lines"]
    else:
        ci_fields = _check_ci_fields(title, stanzas, mode)
        lines = ci_fields.pop("lines", None) or [seg.text for seg in segments]
        fields.update(ci_fields)
        fields["lines"] = lines
    fields["marks"] = lines_marks(lines, mode)
    fields["uncertain"] = uncertain_chars(lines, mode)
    if title is not None and not isinstance(title, str):
        return MeterReport(**fields)  # validation names the bad title
    # Every field was built here from checked values, so the report skips pydantic's validation (most of the time).
    return trusted(MeterReport, fields)


def _check_ci_fields(title: str | None, stanzas: list[list[Segment]], mode: str = "pingshui") -> dict[str, Any]:
    """Report fields for a 词: form, 平仄 and rhyme against the best fitting 体 of its 词牌."""
    # The 词 checker (its 词谱 and config) is imported on the first 词, keeping the engine's import cheap for 近体.
    from poemlib.meter.cipai import check_ci, closest_names, parse_cipai, title_head

    name = parse_cipai(title)
    if not stanzas:
        empty = Violation(category="form", rule="句数", message="the poem is empty")
        return {"form_ok": False, "violations": [empty], "cipai": name}
    if name is None:
        head = title_head(title)
        if head:
            near = "、".join(closest_names(head)) or "none"
            reason = f"词牌 {head!r} is not a known 词牌 (closest known: {near})"
        else:
            reason = "no 词牌 in the title"
        return {"form_ok": None, "notes": [f"form, 平仄 and rhyme not checked: {reason}"], "cipai": None}
    res = check_ci(name, stanzas, mode)
    return {
        "form_ok": res.form_ok, "tone_ok": res.tone_ok, "rhyme_ok": res.rhyme_ok, "violations": res.violations,
        "notes": res.notes, "cipai": name, "template": res.variant, "lines": res.lines, "template_lines": res.template_lines,
        "rhyme_group": res.rhyme_group, "rhyme_chars": res.rhyme_chars, "rhyme_positions": res.rhyme_positions,
    }


# ---------------------------------------------------------------------------
# Tables and annotation files
# ---------------------------------------------------------------------------


def add_meter_columns(
    df: pd.DataFrame,
    *,
    mode: str = "pingshui",
    type_col: str = "poem_type",
    content_col: str = "poem_content",
    title_col: str | None = "poem_title",
    prefix: str = "meter_",
) -> pd.DataFrame:
    """A copy of df with meter columns: form_ok, tone_ok, rhyme_ok, passes, violations, template, marks."""
    import pandas as pd

    columns: dict[str, list[Any]] = {k: [] for k in ("form_ok", "tone_ok", "rhyme_ok", "passes", "n_violations", "violations", "template", "marks")}
    titles = df[title_col] if title_col and title_col in df.columns else [None] * len(df)
    for ptype, content, title in zip(df[type_col], df[content_col], titles):
        if not isinstance(ptype, str) or not isinstance(content, str) or ptype not in POEM_TYPES:
            for values in columns.values():
                values.append(None)
            continue
        report = check(ptype, content, title if isinstance(title, str) else None, mode)
        columns["form_ok"].append(report.form_ok)
        columns["tone_ok"].append(report.tone_ok)
        columns["rhyme_ok"].append(report.rhyme_ok)
        columns["passes"].append(passes(report))
        columns["n_violations"].append(len(report.violations))
        columns["violations"].append([v.short() for v in report.violations])
        columns["template"].append(report.template)
        columns["marks"].append(report.marks_text())
    out = df.copy()
    for name, values in columns.items():
        out[f"{prefix}{name}"] = pd.Series(values, index=df.index, dtype=object)
    return out


def check_records(records: Iterable[dict[str, Any]], mode: str = "pingshui") -> tuple[list[MeterReport], Counter[str]]:
    """Check every fit poem in annotation records; also count why records were skipped."""
    reports, skipped = [], Counter()
    for record in records:
        annotation, why = annotation_fields(record)
        if annotation is None:
            skipped[why] += 1
            continue
        try:
            reports.append(check(annotation["poem_type"], annotation["poem_content"], annotation.get("poem_title"), mode))
        except ValueError:
            skipped["invalid"] += 1
    return reports, skipped


def summarise(reports: Iterable[MeterReport]) -> dict[str, Any]:
    """Pass rates per poem type: n, and for form/tone/rhyme the rate among poems where the check applies."""
    groups: dict[str, list[MeterReport]] = {}
    for report in reports:
        groups.setdefault(report.poem_type, []).append(report)
    by_type = {ptype: _rates(groups[ptype]) for ptype in POEM_TYPES if ptype in groups}
    return {"by_type": by_type, "overall": _rates([r for rs in groups.values() for r in rs])}


def _rates(reports: list[MeterReport]) -> dict[str, Any]:
    """n, per-check applicable counts and pass rates, and the rate of poems passing every applicable check."""
    out: dict[str, Any] = {"n": len(reports)}
    for key in ("form_ok", "tone_ok", "rhyme_ok"):
        values = [getattr(r, key) for r in reports if getattr(r, key) is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
        out[f"{key.removesuffix('_ok')}_n"] = len(values)
    out["all_ok"] = round(sum(r.ok for r in reports) / len(reports), 4) if reports else None
    return out
