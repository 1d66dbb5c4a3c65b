"""Revision from the meter's findings: the versioned revision prompt, the message naming every violation, the
meter summary of an answer, the best round, and whether a record still has revision rounds to do.

A violation is named by its line as 第N句, its position, its character, its rule (e.g. 失粘) and what the rule needs
(平 or 仄, the rhyme group in use, the 粘/对 partner), so that a reviser (and the loopback server's check) can act on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from poemlib.annotate.config import AnnotateConfig
from poemlib.annotate.errors import AnnotateConfigError
from poemlib.config import RESOURCES_DIR
from poemlib.meter import MeterCheckError, MeterReport, Violation, check_annotation
from poemlib.schema import Annotation, AnnotationRecord, MeterSummary, Revision, Status

PROMPTS_DIR = RESOURCES_DIR / "prompts"
TONE_OF_MARK = {"平": "平", "仄": "仄"}


@dataclass(frozen=True)
class RevisePrompt:
    """The revision message template (string.Template, $-fields) and its version."""

    template: str
    version: str


def load_revise_prompt(cfg: AnnotateConfig) -> RevisePrompt:
    """Read the revision prompt file; version = '<revise_version>+<sha256[:8] of the file>'."""
    path = Path(cfg.prompts.revise)
    path = path if path.is_absolute() else PROMPTS_DIR / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotateConfigError(f"revision prompt file not found: {path} ({exc})") from exc
    digest = hashlib.sha256(data).hexdigest()[:8]
    return RevisePrompt(data.decode("utf-8").strip() + "\n", f"{cfg.prompts.revise_version}+{digest}")


def meter_report(annotation: Annotation | None) -> tuple[MeterReport | None, str | None]:
    """(report, None), (None, why it could not be checked), or (None, None) when there is no poem."""
    try:
        return check_annotation(annotation), None
    except MeterCheckError as exc:
        return None, str(exc)


def summarise(report: MeterReport | None, error: str | None = None) -> MeterSummary:
    """The stored form of a meter report."""
    if report is None:
        return MeterSummary(error=error or "no poem to check")
    return MeterSummary(form_ok=report.form_ok, tone_ok=report.tone_ok, rhyme_ok=report.rhyme_ok, violations=[v.short() for v in report.violations])


def meter_summary(annotation: Annotation | None) -> MeterSummary:
    """The meter summary of an answer's poem (through `poemlib.meter.check_annotation`)."""
    return summarise(*meter_report(annotation))


def _char_at(report: MeterReport, line: int | None, position: int | None) -> str | None:
    if line is None or position is None or not 1 <= line <= len(report.lines):
        return None
    text = report.lines[line - 1]
    return text[position - 1] if 1 <= position <= len(text) else None


def _pattern_tone(report: MeterReport, v: Violation) -> str | None:
    """平 or 仄 as the standard pattern asks at the violation's place (None where either is allowed)."""
    if v.line is None or v.position is None or v.line > len(report.template_lines):
        return None
    pattern = report.template_lines[v.line - 1]
    return TONE_OF_MARK.get(pattern[v.position - 1]) if v.position <= len(pattern) else None


def _partner(report: MeterReport, v: Violation, relation: str) -> str:
    """'须与第N句第P字「x」…' for 失粘 (same tone as the line before) and 失对 (opposite of the couplet's first line)."""
    if v.line is None or v.line < 2 or v.position is None:
        return ""
    char = _char_at(report, v.line - 1, v.position) or ""
    return f"须与第{v.line - 1}句第{v.position}字「{char}」{relation}"


def _rhyme_need(report: MeterReport, v: Violation) -> str:
    group = report.rhyme_group or "本诗所押的韵部"
    chars = "、".join(c for c in dict.fromkeys(report.rhyme_chars) if c != v.char)
    return f"韵脚须押{group}" + (f"（本诗其他韵脚：{chars}）" if chars else "")


def requirement(report: MeterReport, v: Violation) -> str:
    """What the broken rule needs at this place, in words a poet acts on."""
    tone = _pattern_tone(report, v)
    tone_need = f"此处应为{tone}声" if tone else ""
    needs = {
        "失粘": _partner(report, v, "平仄相同（粘）"),
        "失对": _partner(report, v, "平仄相反（对）"),
        "二四六分明": tone_need or "第二、四、六字须平仄相间",
        "孤平": "本句除韵脚外只有一个平声字，须把第一或第三字改为平声（或以拗救补回）",
        "三平尾": "句末三字不可连用平声，倒数第三字须改为仄声",
        "仄收": "不押韵的句子句末须用仄声字",
        "平收": "押韵的句子句末须用平声字，" + _rhyme_need(report, v),
        "出韵": _rhyme_need(report, v) + "，请换一个该韵部的平声字",
        "重韵": "同一个字不可两次作韵脚，请换" + (report.rhyme_group or "同韵部") + "中另一字",
        "押仄声韵": "近体诗押平声韵，" + _rhyme_need(report, v),
        "词谱平仄": tone_need or "依词谱改用相反声调的字",
        "句数": f"{report.poem_type}的句数不合，须依体裁写足句数",
        "字数": f"{report.poem_type}每句字数须一致且合体裁",
        "词牌句式": f"句式须依{report.cipai or '词牌'}的词谱",
        "分片": f"分片须依{report.cipai or '词牌'}的词谱",
        "格式不合": "体式不合，平仄无从对照，请先依体裁写足句数与字数",
    }
    return needs.get(v.rule) or tone_need or v.message


def violation_line(report: MeterReport, v: Violation) -> str:
    """One violation as the message names it: 第N句第P字「x」 rule：what it needs."""
    where = f"第{v.line}句" if v.line else "全篇"
    where += f"第{v.position}字" if v.line and v.position else ""
    char = f"「{v.char}」" if v.char else ""
    return f"- {where}{char}{v.rule}：{requirement(report, v)}"


def revision_message(report: MeterReport, annotation: Annotation, prompt: RevisePrompt) -> str:
    """The user turn asking for a corrected poem: every violation of the report, and the form to keep."""
    cipai = report.cipai
    fields = {
        "title": annotation.poem_title or "",
        "poem_type": report.poem_type,
        "rhyme_book": "词林正韵与词谱" if report.poem_type == "词" else ("中华新韵" if report.mode == "xinyun" else "平水韵"),
        "template": f"格式为{report.template}" if report.template else "格式未能对上标准体式",
        "violations": "\n".join(violation_line(report, v) for v in report.violations),
        "keep_form": f"，词牌仍为{cipai}" if cipai else "",
        "rhyme_group": report.rhyme_group or "原韵部",
        "rhyme_chars": f"（{'、'.join(dict.fromkeys(report.rhyme_chars))}）" if report.rhyme_chars else "",
    }
    return Template(prompt.template).safe_substitute(fields)


def rank(round_: Revision) -> tuple[int, int, int]:
    """Sort key of a round: passes all three checks > fewer violations > later round."""
    meter = round_.meter
    if round_.status is not Status.ok or meter is None:
        return (-1, -(10**6), round_.round)
    return (int(meter.passes), -len(meter.violations), round_.round)


def best_round(rounds: list[Revision]) -> Revision:
    """The round whose annotation becomes the record's (only ok rounds qualify; the first answer always is one)."""
    candidates = [r for r in rounds if r.status is Status.ok and r.annotation is not None]
    if not candidates:
        raise ValueError("no ok round to choose from")
    return max(candidates, key=rank)


def needs_revision(record: AnnotationRecord, rounds: int) -> bool:
    """True when an ok record's poem fails 格律 and fewer than `rounds` revision rounds were done."""
    if rounds <= 0 or record.status is not Status.ok or len(record.revisions) >= rounds:
        return False
    if record.revisions or record.first_answer is not None:
        meter = best_round([r for r in (record.first_answer, *record.revisions) if r is not None]).meter
        return meter is not None and meter.error is None and not meter.passes
    report, error = meter_report(record.annotation)
    return error is None and report is not None and not report.ok
