"""PoemStudio: the ipywidgets page bound to a `StudioController`; display `.widget`.

Widget changes are forwarded to the controller; the controller's events (messages, loaded backends, the chosen
photo, busy and filled columns) redraw the widgets. Every callback that fails becomes a message, never a dead button.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poemlib.demo import markup
from poemlib.demo.config import DemoSettings, running_in_voila
from poemlib.demo.controller import StudioController
from poemlib.demo.panels import (
    backend_panel,
    controls_box,
    customise_panel,
    generate_button,
    photo_panel,
    result_columns,
    status_line,
    studio_layout,
)
from poemlib.demo.photos import gallery_css, preview_jpeg
from poemlib.demo.state import ControllerEvents
from poemlib.render import busy_html, idle_html
from poemlib.schema import GenerationResult, PoemRequest

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from poemlib.backends import Backend, BackendStatus

log = logging.getLogger(__name__)

# customisation field → the PoemStudio attribute of its widget
FIELD_WIDGETS = {
    "poem_type": "poem_type",
    "cipai": "cipai",
    "mood": "mood",
    "extra_instruction": "prompt",
    "temperature": "temperature",
    "max_new_tokens": "max_tokens",
    "seed": "seed",
    "constrain": "constrain",
}


class PoemStudio(ControllerEvents):
    """The demo's widgets, bound to `self.controller`; display `.widget`."""

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        *,
        profile: str | None = None,
        config: str | os.PathLike[str] | Mapping[str, Any] | DemoSettings | None = None,
        samples: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.controller = StudioController(backends, profile=profile, config=config, samples=samples, events=self, start=False)
        self._build(widgets)
        self._bind()
        self.controller.start()

    # -- building and binding ---------------------------------------------------------------------------------------
    def _build(self, w: Any) -> None:
        ctrl, settings = self.controller, self.controller.settings
        photo = photo_panel(w, ctrl.samples, settings)
        fields = customise_panel(w, settings, ctrl.customisation)
        toggles = backend_panel(w, ctrl.names, ctrl.enabled)
        columns = result_columns(w, ctrl.names)
        self.sample_buttons, self.upload, self.preview, self.photo_caption = photo.sample_buttons, photo.upload, photo.preview, photo.caption
        self.prompt, self.poem_type, self.cipai, self.mood = fields.prompt, fields.poem_type, fields.cipai, fields.mood
        self.temperature, self.max_tokens, self.seed, self.vertical = fields.temperature, fields.max_tokens, fields.seed, fields.vertical
        self.constrain = fields.constrain
        self.toggles, self.state_pills = toggles.toggles, toggles.state_pills
        self.headers, self.cards, self.columns = columns.headers, columns.cards, columns.columns
        self.generate_button = generate_button(w)
        self.status = status_line(w)
        self.style = w.HTML(f"<style>{markup.demo_css()}\n{gallery_css(ctrl.samples, settings.thumb_size)}</style>")
        self.banner = w.HTML(markup.banner_html(ctrl.profile))
        controls = controls_box(w, fields, toggles, self.generate_button)
        self.widget = studio_layout(w, style=self.style, banner=self.banner, photo=photo, controls=controls, status=self.status, columns=columns)
        self._sync_columns()

    def _bind(self) -> None:
        for path in self.controller.samples:
            self.sample_buttons[path.name].on_click(lambda _b, p=path: self._safe(self.select_sample, p))
        self.upload.observe(self._on_upload, names="value")
        for field, attr in FIELD_WIDGETS.items():
            getattr(self, attr).observe(lambda change, f=field: self._safe(self.controller.customise, **{f: change["new"]}), names="value")
        self.poem_type.observe(self._on_poem_type, names="value")
        self.vertical.observe(lambda _c: self._safe(self.rerender), names="value")
        for name, toggle in self.toggles.items():
            toggle.observe(lambda change, n=name: self._safe(self._on_toggle, n, change["new"]), names="value")
        self.generate_button.on_click(lambda _b: self._safe(self.generate))

    def _safe(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a UI callback; any exception becomes a message instead of a dead button."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # shown to the user
            log.exception("demo callback failed")
            self.controller.message("error", f"出错 error: {type(exc).__name__}: {exc}")
            return None

    def _on_poem_type(self, change: Mapping[str, Any]) -> None:
        is_ci = change.get("new") == "词"
        self.cipai.layout.display = None if is_ci else "none"
        if not is_ci:
            self.cipai.value = ""

    def _on_toggle(self, name: str, on: bool) -> None:
        self.controller.set_enabled(name, on)
        self._sync_columns()

    def _sync_columns(self) -> None:
        """Show the columns of the chosen backends only."""
        for name, column in self.columns.items():
            column.layout.display = None if self.controller.enabled[name] else "none"

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        """The upload widget's value changed: take its first file, then clear it so the same file can come again."""
        files = change.get("new") or ()
        if not files:
            return
        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        try:
            self.load_upload(bytes(item["content"]), str(item.get("name") or "upload"))
        except Exception as exc:  # noqa: BLE001 - a malformed upload message must not kill the widget
            self.controller.message("error", f"图片无法使用 bad upload: {type(exc).__name__}: {exc}")
        finally:
            try:
                self.upload.value = ()
            except Exception:  # noqa: BLE001 - older ipywidgets cannot clear the value
                log.debug("cannot clear the upload widget")

    # -- controller events ------------------------------------------------------------------------------------------
    def message(self, level: str, text: str) -> None:
        """Show the controller's message in the status line."""
        self.status.value = markup.message_html(level, text)

    def backends_loaded(self) -> None:
        """Each backend's label and state next to its toggle and above its column."""
        exc = self.controller.load_error()
        statuses = self.controller.statuses()
        for name in self.controller.names:
            if exc is not None:
                label, pill = self.controller.label_of(name), markup.state_pill("error", f"{type(exc).__name__}: {exc}")
                self.headers[name].value = markup.header_html(name, label, markup.state_pill("error"))
            else:
                label, status = self.controller.label_of(name), statuses.get(name)
                pill = markup.state_pill(status.state, status.detail) if status else markup.state_pill("error", "backend missing")
                self.toggles[name].description = label
                self.toggles[name].tooltip = status.detail if status else ""
                self.headers[name].value = markup.header_html(name, label, pill)
            self.state_pills[name].value = pill

    def photo_changed(self) -> None:
        """Preview and caption of the chosen photo; its gallery button marked selected."""
        image, name = self.controller.photo, self.controller.photo_name
        if image is None or name is None:
            return
        self.preview.value = preview_jpeg(image, self.controller.settings.preview_max_px)
        self.preview.layout.display = None
        self.photo_caption.value = markup.photo_caption_html(name, image.width, image.height)
        for key, button in self.sample_buttons.items():
            if key == name:
                button.add_class("selected")
            else:
                button.remove_class("selected")

    def column_changed(self, name: str) -> None:
        """Redraw one column: busy indicator, its card, or the idle hint."""
        self.cards[name].value = self._column_html(name)

    def running_changed(self, running: bool) -> None:
        """No second run while one is going."""
        self.generate_button.disabled = running

    def _column_html(self, name: str) -> str:
        column = self.controller.columns[name]
        if column.phase == "busy":
            return busy_html(self.controller.label_of(name))
        if column.result is None:
            return idle_html()
        return markup.card_html(column.result, column.report, vertical=bool(self.vertical.value),
                                raw_chars=self.controller.settings.raw_excerpt_chars)

    # -- the studio's API (what notebooks and tests call) ------------------------------------------------------------
    @property
    def photo(self) -> Image.Image | None:
        """The chosen photo, prepared (EXIF-rotated, RGB, within the pixel budget)."""
        return self.controller.photo

    @property
    def photo_name(self) -> str | None:
        """The chosen photo's file name."""
        return self.controller.photo_name

    @property
    def max_pixels(self) -> int:
        """The pixel budget every photo is prepared to."""
        return self.controller.max_pixels

    @property
    def last_message(self) -> tuple[str, str]:
        """The status message as (level, text)."""
        return self.controller.last_message

    def statuses(self) -> dict[str, BackendStatus]:
        """Each loaded backend's status (empty while loading)."""
        return self.controller.statuses()

    def wait_ready(self, timeout: float | None = None) -> dict[str, BackendStatus]:
        """Wait for the backends to load; their statuses by name."""
        return self.controller.wait_ready(timeout)

    def select_sample(self, sample: str | os.PathLike[str] | int) -> Path:
        """Choose a sample photo by file name, stem, path or index."""
        return self.controller.select_sample(sample)

    def load_upload(self, data: bytes, name: str = "upload") -> bool:
        """Take an uploaded file; False (with a message) when it cannot be used."""
        return self.controller.load_upload(data, name)

    def current_request(self) -> PoemRequest:
        """The PoemRequest the customisation widgets describe."""
        return self.controller.request()

    def generate(self) -> dict[str, Future[GenerationResult]]:
        """Run the chosen backends concurrently; futures by backend name (empty, with a message, if nothing to do)."""
        return self.controller.generate()

    def generate_sync(
        self,
        sample: str | os.PathLike[str] | int | None = None,
        *,
        backends: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, GenerationResult]:
        """Choose a sample (optional), switch the toggles to `backends` (optional), generate and wait."""
        if backends is not None:
            wanted = set(backends)
            for name, toggle in self.toggles.items():
                toggle.value = name in wanted
        return self.controller.generate_sync(sample, timeout=timeout)

    def rerender(self) -> None:
        """Redraw every filled card (after the vertical toggle)."""
        for name in self.controller.results():
            self.column_changed(name)

    def cards_html(self) -> str:
        """The current cards side by side as standalone HTML (with the stylesheet), for static outputs."""
        results = self.controller.results()
        return markup.cards_page_html(
            (name, self.controller.label_of(name), self._column_html(name)) for name in self.controller.names if name in results
        )

    def run_headless(self, enabled: bool | None = None, sample: str | os.PathLike[str] | None = None) -> Any:
        """Generate once for a sample when run headless (papermill), and return the cards as displayable HTML.

        enabled=None means: yes unless the kernel was started by Voilà (the page opens idle). Returns None when idle.
        """
        if enabled is None:
            enabled = not running_in_voila()
        if not enabled:
            return None
        self.generate_sync(sample if sample is not None else self.controller.settings.headless_sample)
        from IPython.display import HTML

        return HTML(self.cards_html())

    def close(self) -> None:
        """Stop the worker threads (running generations finish first)."""
        self.controller.close()
