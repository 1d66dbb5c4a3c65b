"""Poem cards: one answer (a poem, an unfit verdict, or a failure) as a self-contained block of HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

from poemlib.render.poem import (
    badge_html,
    meter_badges_html,
    poem_lines_html,
    tone_legend_html,
    violations_html,
)
from poemlib.render.poem import escape as _e
from poemlib.schema import Annotation, GenerationResult

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.meter import MeterReport

# error kinds that mean "the model answered, but not with a usable poem"
PARSE_KINDS = frozenset({"invalid_json", "schema_invalid", "truncated", "empty"})
ERROR_TITLES = {
    "bad_image": "图片无法使用 / bad image",
    "safety": "安全拦截 / blocked for safety",
    "blocked": "请求被拦截 / prompt blocked",
    "recitation": "疑似背诵 / recitation stop",
    "rate_limited": "请求过多 / rate limited",
    "server_error": "服务出错 / server error",
    "timeout": "超时 / timed out",
    "auth": "缺少或无效密钥 / no key or key rejected",
    "api_error": "接口出错 / API error",
    "generation_error": "生成失败 / generation failed",
}
PARSE_TITLE = "未能解析 / could not parse"
CONSTRAINED_BADGE = "格律约束"  # shown on every card of an answer decoded under the 格律 constraint


def busy_html(label: str) -> str:
    """The busy indicator shown in a column until its backend answers."""
    return (
        f'<div class="poem-busy"><div class="spinner"></div>'
        f"<div>生成中 generating… <br><small>{_e(label)}</small></div></div>"
    )


def idle_html(text: str = "选择照片，然后点「作诗 Generate」 · choose a photo, then Generate") -> str:
    """What an empty column shows."""
    return f'<div class="poem-idle">{_e(text)}</div>'


def stats_html(result: GenerationResult) -> str:
    """Latency and token counts (and a 格律约束 badge when the answer was constrained)."""
    parts = [f'<span class="latency">用时 {result.latency_s:.2f} s</span>']
    if result.constrained:
        parts.insert(0, badge_html("constrained", CONSTRAINED_BADGE, "meter-info",
                                   "decoded under the 格律 constraint: the model could only write tokens that keep form, 平仄 and rhyme"))
    usage = result.usage
    if usage.prompt_tokens or usage.output_tokens or usage.total_tokens:
        tokens = f"tokens: in {usage.prompt_tokens} · out {usage.output_tokens}"
        if usage.thinking_tokens:
            tokens += f" (thinking {usage.thinking_tokens})"
        parts.append(f'<span class="tokens">{_e(tokens)}</span>')
    parts.append(f'<span class="backend-name">{_e(result.backend)}</span>')
    return f'<div class="poem-stats">{"".join(parts)}</div>'


def poem_card_html(
    annotation: Annotation,
    report: MeterReport | None = None,
    *,
    label: str | None = None,
    meta: str | None = None,
    key: str = "poem",
    vertical: bool = False,
    footer_html: str = "",
) -> str:
    """A poem or an unfit verdict as a card: title, 体裁/词牌 badges, 格律 badges, coloured lines, violations,
    explanation; `meta` is a small caption (e.g. the photo), `footer_html` trusted HTML (latency, tokens)."""
    who = f'<div class="card-label">{_e(label)}</div>' if label else ""
    caption = f'<div class="card-meta">{_e(meta)}</div>' if meta else ""
    if not annotation.create_condition:
        return (
            f'<div class="poem-card poem-unfit poem-card-{_e(key)}">{who}'
            f'<div class="card-head"><span class="poem-title">不宜入诗</span><span class="poem-type-badge">unfit</span></div>{caption}'
            f'<div class="error-message">模型认为这张照片不适合作诗 / the model judged this photo unfit:</div>'
            f'<div class="poem-explanation">{_e(annotation.poem_content)}</div>'
            f'<div class="poem-explanation">{_e(annotation.poem_explanation)}</div>{footer_html}</div>'
        )
    head = [f'<span class="poem-title">{_e(annotation.poem_title or "无题")}</span>']
    head.append(f'<span class="poem-type-badge">{_e(annotation.poem_type)}</span>')
    if report is not None and report.cipai:
        head.append(f'<span class="cipai-badge">词牌 {_e(report.cipai)}</span>')
    return "".join(
        [
            f'<div class="poem-card poem-ok poem-card-{_e(key)}">{who}',
            f'<div class="card-head">{"".join(head)}</div>{caption}',
            meter_badges_html(report),
            poem_lines_html(annotation.poem_content, report, vertical=vertical),
            tone_legend_html() if report is not None else "",
            violations_html(report),
            f'<div class="poem-explanation">{_e(annotation.poem_explanation)}</div>',
            footer_html,
            "</div>",
        ]
    )


def error_card_html(result: GenerationResult, *, label: str | None = None, raw_chars: int = 240) -> str:
    """A failed answer: what went wrong, and an excerpt of the raw text when the model answered unparseably."""
    backend = _e(result.backend)
    who = f'<div class="card-label">{_e(label)}</div>' if label else ""
    kind = result.error_kind or "api_error"
    parse = kind in PARSE_KINDS
    title = PARSE_TITLE if parse else ERROR_TITLES.get(kind, f"出错 / {kind}")
    parts = [
        f'<div class="poem-card poem-error poem-card-{backend}" data-error-kind="{_e(kind)}">{who}',
        f'<div class="error-title">{_e(title)} <small>({_e(kind)})</small></div>',
    ]
    raw = (result.raw_text or "").strip()
    if parse and kind != "schema_invalid":
        # the message would only repeat the raw text: say what happened instead
        why = {"truncated": "the answer hit the token limit before a complete JSON poem",
               "empty": "the model answered with no text"}.get(kind, "no JSON poem found in the answer")
        parts.append(f'<div class="error-message">{_e(why)}</div>')
    elif result.error_message:
        parts.append(f'<div class="error-message">{_e(result.error_message[:600])}</div>')
    if raw:
        excerpt = raw[:raw_chars] + ("…" if len(raw) > raw_chars else "")
        parts.append(f'<div class="raw-label">模型原文 raw answer ({len(raw)} chars):</div><div class="raw-excerpt">{_e(excerpt)}</div>')
    parts.append(stats_html(result) + "</div>")
    return "".join(parts)


def result_card_html(
    result: GenerationResult,
    report: MeterReport | None = None,
    *,
    label: str | None = None,
    vertical: bool = False,
    raw_chars: int = 240,
) -> str:
    """One backend's answer as a card (pure: same inputs, same HTML): the poem, the unfit verdict, or the failure."""
    if result.annotation is None:
        return error_card_html(result, label=label, raw_chars=raw_chars)
    return poem_card_html(result.annotation, report, label=label, key=result.backend, vertical=vertical, footer_html=stats_html(result))
