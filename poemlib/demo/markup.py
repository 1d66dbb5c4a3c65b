"""The studio's own HTML (no widgets): state pills, column headers, banner, messages, cards and the static page.

Poems and cards themselves come from `poemlib.render`; this adds the studio's frame around them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from poemlib.config import RESOURCES_DIR
from poemlib.demo.config import OFFLINE_BANNER
from poemlib.render import escape, result_card_html, stylesheet
from poemlib.schema import GenerationResult

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.meter import MeterReport

log = logging.getLogger(__name__)

DEMO_CSS_PATH = RESOURCES_DIR / "demo.css"
TITLE_HTML = '<div class="studio-title">看图作诗 · Poem Studio<small>one photo, three poets: what did fine-tuning change?</small></div>'
NO_PHOTO_HTML = '<span class="photo-caption">尚未选择照片 no photo yet</span>'

# BackendStatus.state → CSS class of its pill
STATE_CLASSES = {
    "ready": "state-ready",
    "offline replay": "state-replay",
    "no key": "state-nokey",
    "model path missing": "state-missing",
    "adapter missing": "state-missing",
    "error": "state-error",
    "loading": "state-loading",
}


@lru_cache(maxsize=1)
def demo_css() -> str:
    """The studio's stylesheet (poemlib/resources/demo.css) followed by the poem cards' (poemlib.render)."""
    return DEMO_CSS_PATH.read_text(encoding="utf-8") + "\n" + stylesheet()


def state_pill(state: str, detail: str = "", *, text: str | None = None) -> str:
    """A small coloured pill naming a backend's state (ready, offline replay, no key, adapter missing …)."""
    cls = STATE_CLASSES.get(state, "state-error")
    title = f' title="{escape(detail)}"' if detail else ""
    return f'<span class="backend-state {cls}"{title}>{escape(text or state)}</span>'


def loading_pill() -> str:
    """The pill shown while the backends load."""
    return state_pill("loading", "loading models…", text="加载中 loading")


def header_html(name: str, label: str, pill: str = "") -> str:
    """A result column's header: the backend's label and its state pill."""
    return f'<div class="col-header" data-backend="{escape(name)}">{escape(label)}{pill}</div>'


def banner_html(profile: str) -> str:
    """What the page says about where its answers come from."""
    if profile == "offline":
        return (
            f'<div class="studio-banner"><b>{escape(OFFLINE_BANNER)}</b><br>'
            "<small>No key, no GPU: Gemini answers are our recorded reference poems for the sample photos, replayed by "
            "a loopback server; base and LoRA Qwen are tiny randomly initialised models (their text is mostly noise, "
            'though a tuned adapter often gets the JSON shape right). Set <code>PROFILE = "real"</code> for the real models.'
            "</small></div>"
        )
    return f'<div class="studio-banner"><b>Profile {escape(profile)}</b> — Gemini 2.5 Pro · Qwen2.5-VL base · LoRA</div>'


def message_html(level: str, text: str) -> str:
    """The status line (level: info | warn | error); empty text clears it."""
    return f'<span class="msg-{escape(level)}">{escape(text)}</span>' if text else ""


def photo_caption_html(name: str, width: int, height: int) -> str:
    """The caption under the preview of the chosen photo."""
    return (
        f'<span class="photo-caption">已选 chosen: <b>{escape(name)}</b> '
        f"({width}×{height} px after EXIF rotation and the pixel budget)</span>"
    )


def card_html(result: GenerationResult, report: MeterReport | None, *, vertical: bool, raw_chars: int) -> str:
    """One backend's answer as a card; a rendering bug becomes an error card, never a spinner left up."""
    try:
        return result_card_html(result, report, vertical=vertical, raw_chars=raw_chars)
    except Exception as exc:  # a rendering bug must not leave the spinner up
        log.exception("demo: rendering %s failed", result.backend)
        return (
            '<div class="poem-card poem-error"><div class="error-title">渲染失败 render failed</div>'
            f'<div class="error-message">{escape(exc)}</div></div>'
        )


def cards_page_html(columns: Iterable[tuple[str, str, str]]) -> str:
    """Filled columns (name, label, card HTML) side by side as standalone HTML with the stylesheet."""
    cols = [
        f'<div class="poem-col poem-col-{escape(name)}" style="flex:1 1 0;min-width:240px">'
        f'<div class="col-header">{escape(label)}</div>{card}</div>'
        for name, label, card in columns
    ]
    return (
        f'<style>{demo_css()}</style><div class="poem-studio"><div class="poem-columns" style="display:flex;gap:10px">'
        f'{"".join(cols)}</div></div>'
    )
