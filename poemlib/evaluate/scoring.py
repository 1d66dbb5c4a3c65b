"""Scoring one answer (a row of the per-sample table) and the per-backend summary table.

Per answer (one row per backend × photo × request):
  - json_ok        a JSON object could be extracted from the raw answer
  - schema_ok      it validates as an Annotation (poemlib.schema.parse_annotation_text)
  - unfit          the answer says the photo is unfit (create_condition false)
  - type_ok        the poem's 体裁 is the requested one (only when a 体裁 was requested and a poem came back);
                   cipai_ok likewise for a requested 词牌 (the title starts with it)
  - form/tone/rhyme_ok, n_violations      poemlib.meter.check_annotation on the poem
  - meter_ok       合律: form, 平仄 and rhyme all pass (None without a poem)
  - bleu4, rouge_l                        character level against the reference annotation's poem (a reference
                                          poem must exist; an answer without a poem scores 0)
  - rep2, repeated_lines, n_chars, n_lines   repetition and length of the poem
  - constrained    the answer was decoded under the 格律 constraint (rows of `base+格律` / `lora+格律`)
Per backend (summary table): 合律率 first (the headline: meter_ok over the answers with a poem), then the rates and
means of the above plus corpus-level distinct-1 / distinct-2.
Private keys (`_violations`, `_meter`, and the objects `_report`, `_result`) carry what the HTML report draws.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from poemlib.evaluate.items import EvalItem
from poemlib.evaluate.metrics import (
    bleu4,
    distinct_n,
    poem_chars,
    poem_lines,
    repeated_line_rate,
    repetition_rate,
    rouge_l,
)
from poemlib.meter import MeterCheckError, check_annotation
from poemlib.schema import (
    Annotation,
    GenerationResult,
    JSONExtractionError,
    extract_json_object,
)

log = logging.getLogger(__name__)

HELI_RATE = "合律率"  # the headline: share of answers with a poem whose form, 平仄 and rhyme all pass
RULE_METRICS = (
    HELI_RATE, "json_parse_rate", "schema_valid_rate", "unfit_rate", "type_adherence", "form_pass", "tone_pass", "rhyme_pass",
    "violations_mean", "bleu4", "rouge_l", "distinct_1", "distinct_2", "rep2", "repeated_lines", "chars_mean",
    "lines_mean", "latency_s", "output_tokens",
)
# row keys holding objects for the report only: never written to results.jsonl
REPORT_OBJECTS = ("_report", "_result")


def meter_summary(annotation: Annotation | None) -> dict[str, Any]:
    """form/tone/rhyme verdicts, violations, per-character marks and the report of a poem (empty for no poem)."""
    try:
        report = check_annotation(annotation)
    except MeterCheckError as exc:  # a poem the meter engine cannot read is a finding, not a crash
        log.warning("meter check failed: %s", exc)
        return {"meter_error": str(exc)}
    if report is None:
        return {}
    violations = [v.model_dump(mode="json") for v in report.violations]
    return {
        "form_ok": report.form_ok,
        "tone_ok": report.tone_ok,
        "rhyme_ok": report.rhyme_ok,
        "n_violations": len(violations),
        "violations": violations,
        "marks": [list(line) for line in report.marks],
        "lines": list(report.lines),
        "report": report,
    }


def meter_ok(meter: Mapping[str, Any]) -> bool | None:
    """合律: form, 平仄 and rhyme all pass (None for an answer without a poem; False when the poem cannot be checked)."""
    if meter.get("meter_error"):
        return False
    if "form_ok" not in meter:
        return None
    return all(meter.get(k) is not False for k in ("form_ok", "tone_ok", "rhyme_ok"))


def _json_ok(text: str) -> bool:
    """True when a JSON object can be extracted from the raw answer."""
    try:
        extract_json_object(text)
    except JSONExtractionError:
        return False
    return True


def _adherence(ann: Annotation | None, poem: str | None, item: EvalItem) -> dict[str, Any]:
    """Did the poem follow the request's 体裁 and 词牌 (None when none was asked or no poem came back)."""
    req = item.request
    type_ok = (ann.poem_type == req.poem_type) if (req.poem_type and poem is not None) else None
    cipai_ok = None
    if req.cipai and poem is not None:
        cipai_ok = bool(ann.poem_title) and ann.poem_title.replace("・", "·").startswith(req.cipai)
    return {"type_ok": type_ok, "cipai_ok": cipai_ok}


def _text_scores(poem: str | None, reference: Annotation | None) -> dict[str, Any]:
    """Similarity to the reference poem, repetition and length of the answer's poem."""
    ref_poem = reference.poem_content if reference is not None and reference.create_condition else None
    return {
        "ref_type": (reference.poem_type if reference.create_condition else "unfit") if reference is not None else None,
        "bleu4": bleu4(poem or "", ref_poem) if ref_poem else None,
        "rouge_l": rouge_l(poem or "", ref_poem) if ref_poem else None,
        "rep2": repetition_rate(poem, 2) if poem else None,
        "repeated_lines": repeated_line_rate(poem) if poem else None,
        "n_chars": len(poem_chars(poem)) if poem else None,
        "n_lines": len(poem_lines(poem)) if poem else None,
    }


def score_result(item: EvalItem, result: GenerationResult) -> dict[str, Any]:
    """One row of the per-sample table (meter marks, violations and report objects under private keys)."""
    ann = result.annotation
    poem = ann.poem_content if ann is not None and ann.create_condition else None
    req = item.request
    row: dict[str, Any] = {
        "backend": result.backend, "image": item.name, "image_sha256": item.sha256,
        "requested_type": req.poem_type, "requested_cipai": req.cipai, "requested_mood": req.mood,
        "json_ok": _json_ok(result.raw_text or ""), "schema_ok": ann is not None,
        "unfit": bool(ann is not None and not ann.create_condition),
        "error_kind": result.error_kind, "error_message": result.error_message,
        "poem_type": ann.poem_type if ann is not None else None,
        "poem_title": ann.poem_title if ann is not None else None,
        "poem_content": ann.poem_content if ann is not None else None,
        "poem_explanation": ann.poem_explanation if ann is not None else None,
        **_adherence(ann, poem, item),
        **_text_scores(poem, item.reference),
        "latency_s": result.latency_s, "prompt_tokens": result.usage.prompt_tokens,
        "output_tokens": result.usage.output_tokens, "constrained": result.constrained, "raw_text": result.raw_text,
    }
    meter = meter_summary(ann)
    row.update({k: meter.get(k) for k in ("form_ok", "tone_ok", "rhyme_ok", "n_violations")})
    row["_violations"] = meter.get("violations") or []
    row["_meter"] = {k: meter.get(k) for k in ("lines", "marks", "violations")}
    row["meter_error"] = meter.get("meter_error")
    row["meter_ok"] = meter_ok(meter)
    row["_report"] = meter.get("report")
    row["_result"] = result
    return row


def _present(values: Iterable[Any]) -> list[Any]:
    """The values that are neither None nor NaN."""
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _rate(values: Iterable[Any]) -> float:
    """Mean of the non-missing booleans (NaN when none)."""
    vals = [bool(v) for v in _present(values)]
    return sum(vals) / len(vals) if vals else float("nan")


def _mean(values: Iterable[Any]) -> float:
    """Mean of the non-missing numbers (NaN when none)."""
    vals = [float(v) for v in _present(values)]
    return sum(vals) / len(vals) if vals else float("nan")


def _backend_summary(name: str, sub: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One backend's line of the summary table."""
    poems = [r["poem_content"] for r in sub if r["schema_ok"] and not r["unfit"] and r["poem_content"]]
    return {
        "backend": name,
        HELI_RATE: _rate(r.get("meter_ok") for r in sub),
        "n": len(sub), "n_poems": len(poems),
        "json_parse_rate": _rate(r["json_ok"] for r in sub),
        "schema_valid_rate": _rate(r["schema_ok"] for r in sub),
        "unfit_rate": _rate(r["unfit"] for r in sub),
        "type_adherence": _rate(r["type_ok"] for r in sub),
        "n_type_requested": sum(r["type_ok"] is not None for r in sub),
        "form_pass": _rate(r["form_ok"] for r in sub),
        "tone_pass": _rate(r["tone_ok"] for r in sub),
        "rhyme_pass": _rate(r["rhyme_ok"] for r in sub),
        "violations_mean": _mean(r["n_violations"] for r in sub),
        # an answer without a poem scores 0 against a reference poem
        "bleu4": _mean((r["bleu4"] or 0.0) for r in sub if r["bleu4"] is not None),
        "rouge_l": _mean((r["rouge_l"] or 0.0) for r in sub if r["rouge_l"] is not None),
        "distinct_1": distinct_n(poems, 1),
        "distinct_2": distinct_n(poems, 2),
        "rep2": _mean(r["rep2"] for r in sub),
        "repeated_lines": _mean(r["repeated_lines"] for r in sub),
        "chars_mean": _mean(r["n_chars"] for r in sub),
        "lines_mean": _mean(r["n_lines"] for r in sub),
        "latency_s": _mean(r["latency_s"] for r in sub),
        "output_tokens": _mean(r["output_tokens"] for r in sub),
    }


def summarize(rows: Sequence[Mapping[str, Any]], backends: Sequence[str] | None = None) -> Any:
    """The per-backend metrics table (pandas DataFrame indexed by backend)."""
    import pandas as pd

    order = list(backends) if backends else list(dict.fromkeys(r["backend"] for r in rows))
    table = [_backend_summary(name, [r for r in rows if r["backend"] == name]) for name in order]
    return pd.DataFrame(table).set_index("backend")
