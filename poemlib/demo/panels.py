"""The studio's widgets, built by small builders (no behaviour: `poemlib.demo.studio` binds them to the controller).

Every builder takes the ipywidgets module as `w`, so ipywidgets is imported only where a studio is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poemlib.demo.config import BACKEND_TITLES, DemoSettings
from poemlib.demo.markup import NO_PHOTO_HTML, TITLE_HTML, header_html, loading_pill
from poemlib.demo.photos import slug
from poemlib.demo.state import Customisation
from poemlib.render import idle_html
from poemlib.schema import POEM_TYPES

log = logging.getLogger(__name__)

NARROW = {"description_width": "90px"}


@dataclass
class PhotoPanel:
    """Sample gallery, upload button, preview and caption."""

    sample_buttons: dict[str, Any]
    gallery: Any
    upload: Any
    preview: Any
    caption: Any
    box: Any


@dataclass
class CustomisePanel:
    """The customisation fields and the vertical-layout switch."""

    prompt: Any
    poem_type: Any
    cipai: Any
    mood: Any
    temperature: Any
    max_tokens: Any
    seed: Any
    vertical: Any
    constrain: Any


@dataclass
class BackendPanel:
    """One toggle and state pill per backend."""

    toggles: dict[str, Any]
    state_pills: dict[str, Any]
    rows: list[Any]


@dataclass
class ColumnsPanel:
    """One result column (header + card) per backend."""

    headers: dict[str, Any]
    cards: dict[str, Any]
    columns: dict[str, Any]
    box: Any


def _with_classes(widget: Any, *classes: str) -> Any:
    for css_class in classes:
        widget.add_class(css_class)
    return widget


def _caption(path: Path) -> str:
    caption = path.stem.replace("_", " ")
    return caption if len(caption) <= 16 else caption[:15] + "…"


def photo_panel(w: Any, samples: Sequence[Path], settings: DemoSettings) -> PhotoPanel:
    """The photo side: a gallery button per sample (CSS class `sample-<slug>`), upload, preview, caption."""
    width, height = settings.thumb_size
    buttons = {
        path.name: _with_classes(
            w.Button(description=_caption(path), tooltip=path.name, layout=w.Layout(width=f"{width}px", height=f"{height}px")),
            "sample-button", f"sample-{slug(path.name)}",
        )
        for path in samples
    }
    gallery = _with_classes(w.HBox(list(buttons.values()), layout=w.Layout(flex_flow="row wrap", max_width="560px")), "sample-gallery")
    upload = _with_classes(
        w.FileUpload(accept="image/*", multiple=False, description="上传照片 Upload", layout=w.Layout(width="180px")), "photo-upload"
    )
    preview = _with_classes(w.Image(format="jpeg", layout=w.Layout(max_width=f"{settings.preview_max_px}px", display="none")), "photo-preview")
    caption = w.HTML(NO_PHOTO_HTML)
    limits = w.HTML(f"<small>≤ {settings.max_upload_mb:g} MB · JPEG PNG WebP BMP GIF TIFF</small>")
    box = w.VBox(
        [
            w.HTML("<b>示例照片 Sample photos</b> <small>(click to choose)</small>"),
            gallery,
            w.HBox([upload, limits], layout=w.Layout(align_items="center")),
            caption,
            preview,
        ],
        layout=w.Layout(width="580px", margin="0 16px 0 0"),
    )
    return PhotoPanel(buttons, gallery, upload, preview, caption, box)


def _mood_options() -> list[str]:
    """Mood suggestions from the instruction pool (none when it cannot be read: they are optional)."""
    try:
        from poemlib.instructions import instruction_pool

        return [str(m) for m in instruction_pool().get("moods", [])]
    except Exception:  # noqa: BLE001 - mood suggestions are optional
        log.warning("demo: no mood suggestions")
        return []


def _cipai_options() -> list[str]:
    """The 词牌 the meter checker knows (none when it cannot be read: the list is optional)."""
    try:
        from poemlib.meter import CIPAI_NAMES

        return list(CIPAI_NAMES)
    except Exception:  # noqa: BLE001 - the 词牌 list is optional
        log.warning("demo: no 词牌 list")
        return []


def customise_panel(w: Any, settings: DemoSettings, start: Customisation) -> CustomisePanel:
    """The customisation fields, starting at `start`; the 词牌 list stays hidden until 体裁 is 词."""
    t_lo, t_hi = settings.sliders.temperature
    n_lo, n_hi = settings.sliders.max_new_tokens
    prompt = _with_classes(
        w.Textarea(placeholder="额外要求（可选）例如：以“归”字收尾 · extra instruction (optional)", description="提示 Prompt",
                   style=NARROW, layout=w.Layout(width="440px", height="56px")),
        "prompt-box",
    )
    return CustomisePanel(
        prompt=prompt,
        poem_type=w.Dropdown(options=[("自动 any", "")] + [(t, t) for t in POEM_TYPES], value=start.poem_type,
                             description="体裁 Form", style=NARROW, layout=w.Layout(width="280px")),
        cipai=w.Dropdown(options=[("任意词牌 any", "")] + [(n, n) for n in _cipai_options()], value="",
                         description="词牌", style=NARROW, layout=w.Layout(width="280px", display="none")),
        mood=w.Combobox(options=_mood_options(), placeholder="如 思乡 / 闲适 (optional)", description="意境 Mood",
                        ensure_option=False, style=NARROW, layout=w.Layout(width="280px")),
        temperature=w.FloatSlider(value=start.temperature, min=t_lo, max=t_hi, step=0.05, description="温度 Temp",
                                  style=NARROW, layout=w.Layout(width="400px")),
        max_tokens=w.IntSlider(value=start.max_new_tokens, min=n_lo, max=n_hi, step=16, description="长度 Tokens",
                               style=NARROW, layout=w.Layout(width="400px")),
        seed=w.IntText(value=start.seed, description="种子 Seed", style=NARROW, layout=w.Layout(width="200px")),
        vertical=w.Checkbox(value=settings.vertical_default, description="竖排 vertical (right → left)", indent=False),
        constrain=_with_classes(
            w.Checkbox(value=start.constrain, description="格律约束 meter-constrained (Qwen columns)", indent=False,
                       tooltip="Qwen writes only poems that keep the form, 平仄 and rhyme of the 体裁 (近体 forms); "
                               "Gemini is not constrained", layout=w.Layout(width="400px")),
            "constrain-toggle",
        ),
    )


def backend_panel(w: Any, names: Sequence[str], enabled: dict[str, bool]) -> BackendPanel:
    """A toggle (CSS class `toggle-<name>`) and a state pill per backend, the pill saying "loading" at first."""
    toggles, pills, rows = {}, {}, []
    for name in names:
        toggles[name] = _with_classes(
            w.Checkbox(value=enabled[name], description=BACKEND_TITLES.get(name, name), indent=False, layout=w.Layout(width="290px")),
            f"toggle-{name}",
        )
        pills[name] = w.HTML(loading_pill())
        rows.append(_with_classes(w.HBox([toggles[name], pills[name]]), "backend-row"))
    return BackendPanel(toggles, pills, rows)


def generate_button(w: Any) -> Any:
    """The 作诗 Generate button (CSS class `generate-button`)."""
    button = w.Button(description="作诗 Generate", button_style="danger", icon="feather", layout=w.Layout(width="200px", height="40px"))
    return _with_classes(button, "generate-button")


def controls_box(w: Any, fields: CustomisePanel, backends: BackendPanel, button: Any) -> Any:
    """The right-hand side: customisation, backend toggles, the button."""
    return w.VBox(
        [
            w.HTML("<b>定制 Customise</b>"),
            fields.prompt,
            fields.poem_type,
            fields.cipai,
            fields.mood,
            fields.temperature,
            fields.max_tokens,
            w.HBox([fields.seed, fields.vertical], layout=w.Layout(align_items="center")),
            fields.constrain,
            w.HTML("<b>模型 Backends</b>"),
            *backends.rows,
            button,
        ]
    )


def result_columns(w: Any, names: Sequence[str]) -> ColumnsPanel:
    """A column per backend (CSS classes `poem-col poem-col-<name>`): its header and an idle card slot."""
    headers, cards, columns = {}, {}, {}
    for name in names:
        headers[name] = w.HTML(header_html(name, BACKEND_TITLES.get(name, name)))
        cards[name] = _with_classes(w.HTML(idle_html()), "poem-slot")
        column = w.VBox([headers[name], cards[name]], layout=w.Layout(flex="1 1 0", min_width="240px"))
        columns[name] = _with_classes(column, "poem-col", f"poem-col-{name}")
    box = _with_classes(w.HBox(list(columns.values()), layout=w.Layout(width="100%")), "poem-columns")
    return ColumnsPanel(headers, cards, columns, box)


def status_line(w: Any) -> Any:
    """The status message area (CSS class `demo-status`)."""
    return _with_classes(w.HTML(""), "demo-status")


def studio_layout(w: Any, *, style: Any, banner: Any, photo: PhotoPanel, controls: Any, status: Any, columns: ColumnsPanel) -> Any:
    """The whole page (CSS class `poem-studio`)."""
    page = w.VBox(
        [style, w.HTML(TITLE_HTML), banner, w.HBox([photo.box, controls], layout=w.Layout(flex_flow="row wrap")), status, columns.box]
    )
    return _with_classes(page, "poem-studio")
