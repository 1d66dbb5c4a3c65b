"""The demo studio: choose a photo, customise the request, and compare Gemini, base Qwen and LoRA Qwen side by side.

    from poemlib.demo import build_app
    app = build_app(profile="offline")   # backends load in the background; the page is usable at once
    app.widget                           # display it (notebook 06_demo, served by Voilà with `poemlib demo`)

- `render_card(result, meter_report)` is the pure HTML rendering of one backend's answer: title, 体裁 badge, the
  poem line by line (optionally vertical, right to left) with per-character 平/仄 colouring and violations
  highlighted, 格律 badges, the explanation, latency and tokens; an unusable answer gets a clear message instead.
- `PoemStudio` holds the widgets. Generate runs the chosen backends concurrently in threads; each column shows a
  busy indicator and fills as its backend finishes; one backend's failure stays in its own column.
- Photos (uploads and samples) are EXIF-rotated, made RGB and downscaled to the shared pixel budget
  (configs/vision.yaml) once; a bad upload gives a message and the app keeps working.

Stable CSS hooks for tests: `.poem-studio`, `.sample-button`, `.generate-button`, `.demo-status`,
`.poem-col-<backend> .poem-card .poem-line`, `.meter-badge`, `.poem-busy`, `.poem-error`.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from poemlib.config import RESOURCES_DIR, load_config, vision_budget
from poemlib.images import BadImageError, encode_jpeg, prepare_image
from poemlib.render import busy_html as render_busy
from poemlib.render import idle_html as render_idle
from poemlib.render import meter_badges_html as render_meter_badges
from poemlib.render import poem_lines_html as render_poem_lines
from poemlib.render import result_card_html as render_card
from poemlib.render import stylesheet
from poemlib.schema import POEM_TYPES, Annotation, GenerationResult, PoemRequest

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.backends import Backend, BackendStatus
    from poemlib.meter import MeterReport

log = logging.getLogger(__name__)

BACKEND_ORDER = ("gemini", "base", "lora")
BACKEND_TITLES = {"gemini": "Gemini", "base": "Qwen base", "lora": "Qwen LoRA"}
DEMO_CSS_PATH = RESOURCES_DIR / "demo.css"
OFFLINE_BANNER = "离线演示 Offline demo — replayed Gemini, tiny random Qwen models"

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


# ---------------------------------------------------------------------------
# Configuration and small helpers
# ---------------------------------------------------------------------------


def load_demo_config(config: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """configs/demo.yaml (or another file / mapping of the same shape), with defaults for every key."""
    cfg: dict[str, Any] = {
        "profile": "offline",
        "backends": list(BACKEND_ORDER),
        "max_upload_mb": 10,
        "pixels": "auto",
        "preview_max_px": 320,
        "thumb_size": [104, 78],
        "vertical_default": False,
        "meter_mode": "pingshui",
        "raw_excerpt_chars": 240,
        "defaults": {"temperature": 0.7, "max_new_tokens": 512, "seed": 0},
        "sliders": {"temperature": [0.0, 1.5], "max_new_tokens": [16, 2048]},
        "headless_sample": "cat_chelsea.jpg",
    }
    loaded = dict(config) if isinstance(config, Mapping) else load_config(config or "demo")
    for key, value in loaded.items():
        if isinstance(value, Mapping) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@lru_cache(maxsize=1)
def demo_css() -> str:
    """The studio's stylesheet (poemlib/resources/demo.css) followed by the poem cards' (poemlib.render)."""
    return DEMO_CSS_PATH.read_text(encoding="utf-8") + "\n" + stylesheet()


def running_in_voila() -> bool:
    """True inside a kernel started by Voilà (it sets VOILA_* variables in the kernel's environment)."""
    return any(key in os.environ for key in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_REQUEST_URL"))


def _e(value: Any) -> str:
    """HTML-escape any value."""
    return html.escape(str(value), quote=True)


def slug(name: str) -> str:
    """A CSS-class-safe name for a sample photo ('cat_chelsea.jpg' → 'cat-chelsea')."""
    return re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-") or "photo"


def meter_report_for(annotation: Annotation | None, mode: str = "pingshui") -> MeterReport | None:
    """The 格律 report of a poem (None for no poem, an unfit answer, or a check that cannot run)."""
    if annotation is None or not annotation.create_condition or not annotation.poem_type:
        return None
    try:
        from poemlib.meter import check

        return check(annotation.poem_type, annotation.poem_content, annotation.poem_title, mode)
    except Exception:  # the card still shows the poem without marks
        log.exception("meter check failed for %r", annotation.poem_title)
        return None


# ---------------------------------------------------------------------------
# Pure HTML rendering
# ---------------------------------------------------------------------------


def state_pill(state: str, detail: str = "") -> str:
    """A small coloured pill naming a backend's state (ready, offline replay, no key, adapter missing …)."""
    cls = STATE_CLASSES.get(state, "state-error")
    title = f' title="{_e(detail)}"' if detail else ""
    return f'<span class="backend-state {cls}"{title}>{_e(state)}</span>'


# ---------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    """JPEG bytes of an image (converted to RGB)."""
    return encode_jpeg(image if image.mode == "RGB" else image.convert("RGB"), quality)


@lru_cache(maxsize=64)
def _thumbnail(path: str, mtime_ns: int, width: int, height: int) -> bytes | None:
    """A cropped, EXIF-rotated JPEG thumbnail of a sample photo (None when it cannot be read)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (width * 2, height * 2))
            im = ImageOps.exif_transpose(im) or im
            thumb = ImageOps.fit(im.convert("RGB"), (int(width * 1.5), int(height * 1.5)), Image.Resampling.LANCZOS)
        return _jpeg(thumb, 80)
    except Exception:  # noqa: BLE001 - a broken sample only loses its thumbnail
        log.warning("demo: cannot thumbnail %s", path)
        return None


def preview_jpeg(image: Image.Image, max_px: int = 320) -> bytes:
    """A small JPEG of a prepared photo for the preview."""
    thumb = image.copy()
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    return _jpeg(thumb)


def pixel_budget(pixels: str, profile: str) -> int:
    """image_max_pixels of a configs/vision.yaml profile; "auto" is the backends profile's own `pixels`."""
    if pixels == "auto":
        try:
            from poemlib.backends import profile_config

            pixels = str(profile_config(profile).get("pixels", "tiny"))
        except Exception:  # noqa: BLE001 - an unknown profile falls back to the tiny budget
            pixels = "tiny"
    return int(vision_budget(pixels)["image_max_pixels"])


# ---------------------------------------------------------------------------
# The studio
# ---------------------------------------------------------------------------


def _quiet_progress_bars() -> None:
    """No "Loading weights" progress widgets from a background thread landing in some cell of the page."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - transformers missing: nothing to quiet
        log.debug("transformers progress bars left as they are")


class PoemStudio:
    """The demo's widgets and their behaviour; display `.widget`."""

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        *,
        profile: str | None = None,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        samples: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.w = widgets
        self.cfg = load_demo_config(config)
        self.profile = profile or str(self.cfg["profile"])
        self.names: list[str] = list(backends) if backends is not None else [n for n in BACKEND_ORDER]
        self.max_pixels = pixel_budget(str(self.cfg["pixels"]), self.profile)
        self.max_upload_bytes = int(float(self.cfg["max_upload_mb"]) * 1024 * 1024)
        self.mode = str(self.cfg["meter_mode"])
        self.photo: Image.Image | None = None
        self.photo_name: str | None = None
        self.results: dict[str, tuple[GenerationResult, Any]] = {}
        self.last_message: tuple[str, str] = ("info", "")
        self._run = 0
        self._pending = 0
        self._run_started = 0.0
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.names)), thread_name_prefix="poem-demo")
        if samples is None:
            try:
                from poemlib.samples import sample_images

                samples = sample_images()
            except Exception:  # noqa: BLE001 - the studio works with uploads alone
                log.warning("demo: no sample photos found")
                samples = []
        self.samples: list[Path] = [Path(p) for p in samples]
        self._build_widgets()
        # backends: given (tests, notebooks that already loaded them) or loaded in the background
        self._backends_future: Future = Future()
        if backends is not None:
            self._backends_future.set_result(dict(backends))
            self._backends_loaded(self._backends_future)
        else:
            self._set_message("info", "模型加载中 loading models in the background… you can choose a photo meanwhile")
            loader = threading.Thread(target=self._load_backends, name="poem-demo-loader", daemon=True)
            loader.start()

    # -- backends ---------------------------------------------------------------------------------------------------
    def _load_backends(self) -> None:
        """Load the backends (models load once per process; base and LoRA share weights)."""
        try:
            from poemlib.backends import load_backends

            _quiet_progress_bars()
            self._backends_future.set_result(load_backends(self.names, profile=self.profile))
        except BaseException as exc:  # a config error: every column will say so
            log.exception("demo: loading backends failed")
            self._backends_future.set_exception(exc)
        self._backends_loaded(self._backends_future)

    @property
    def backends(self) -> dict[str, Backend]:
        """The loaded backends (waits for the background load)."""
        return self._backends_future.result()

    def wait_ready(self, timeout: float | None = None) -> dict[str, BackendStatus]:
        """Wait for the backends to load; their statuses by name."""
        self._backends_future.exception(timeout)
        return self.statuses()

    def statuses(self) -> dict[str, Any]:
        """Each loaded backend's status (empty while loading)."""
        if not self._backends_future.done() or self._backends_future.exception() is not None:
            return {}
        out = {}
        for name, backend in self._backends_future.result().items():
            try:
                out[name] = backend.status()
            except Exception as exc:  # noqa: BLE001 - shown as the backend's state
                from poemlib.backends import BackendStatus

                out[name] = BackendStatus(name=name, state="error", detail=f"{type(exc).__name__}: {exc}", ready=False)
        return out

    def _backends_loaded(self, future: Future) -> None:
        """Show each backend's label and state next to its toggle and above its column."""
        exc = future.exception()
        if exc is not None:
            for name in self.names:
                self.state_pills[name].value = state_pill("error", f"{type(exc).__name__}: {exc}")
                self.headers[name].value = self._header_html(name, BACKEND_TITLES.get(name, name), state_pill("error"))
            self._set_message("error", f"模型加载失败 loading backends failed: {type(exc).__name__}: {exc}")
            return
        backends = future.result()
        statuses = self.statuses()
        for name in self.names:
            backend = backends.get(name)
            label = getattr(backend, "label", BACKEND_TITLES.get(name, name))
            st = statuses.get(name)
            pill = state_pill(st.state, st.detail) if st else state_pill("error", "backend missing")
            self.toggles[name].description = label
            self.toggles[name].tooltip = st.detail if st else ""
            self.state_pills[name].value = pill
            self.headers[name].value = self._header_html(name, label, pill)
        if self.last_message[1].startswith("模型加载中"):
            self._set_message("info", "模型已就绪 backends ready" + (f" · {self.photo_name}" if self.photo_name else ""))

    def label_of(self, name: str) -> str:
        """A backend's label (its short title while loading)."""
        if self._backends_future.done() and self._backends_future.exception() is None:
            backend = self._backends_future.result().get(name)
            if backend is not None:
                return str(getattr(backend, "label", name))
        return BACKEND_TITLES.get(name, name)

    # -- widgets ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _header_html(name: str, label: str, pill: str) -> str:
        return f'<div class="col-header" data-backend="{_e(name)}">{_e(label)}{pill}</div>'

    def _gallery_css(self) -> str:
        """Background-image rules for the gallery buttons (thumbnails as data URIs)."""
        width, height = (int(v) for v in self.cfg["thumb_size"])
        rules = []
        for path in self.samples:
            try:
                data = _thumbnail(str(path), path.stat().st_mtime_ns, width, height)
            except OSError:
                data = None
            if data:
                b64 = base64.b64encode(data).decode("ascii")
                rules.append(f".poem-studio .sample-{slug(path.name)} {{ background-image: url(data:image/jpeg;base64,{b64}); }}")
        return "\n".join(rules)

    def _build_widgets(self) -> None:
        w = self.w
        defaults = self.cfg["defaults"]
        sliders = self.cfg["sliders"]
        width, height = (int(v) for v in self.cfg["thumb_size"])
        self.style = w.HTML(f"<style>{demo_css()}\n{self._gallery_css()}</style>")
        self.title = w.HTML(
            '<div class="studio-title">看图作诗 · Poem Studio<small>one photo, three poets: what did fine-tuning change?</small></div>'
        )
        self.banner = w.HTML(self._banner_html())

        # photo: gallery, upload, preview
        self.sample_buttons: dict[str, Any] = {}
        for path in self.samples:
            caption = path.stem.replace("_", " ")
            caption = caption if len(caption) <= 16 else caption[:15] + "…"
            button = w.Button(description=caption, tooltip=path.name, layout=w.Layout(width=f"{width}px", height=f"{height}px"))
            button.add_class("sample-button")
            button.add_class(f"sample-{slug(path.name)}")
            button.on_click(lambda _b, p=path: self._safe(self.select_sample, p))
            self.sample_buttons[path.name] = button
        self.gallery = w.HBox(list(self.sample_buttons.values()), layout=w.Layout(flex_flow="row wrap", max_width="560px"))
        self.gallery.add_class("sample-gallery")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="上传照片 Upload", layout=w.Layout(width="180px"))
        self.upload.add_class("photo-upload")
        self.upload.observe(self._on_upload, names="value")
        self.preview = w.Image(format="jpeg", layout=w.Layout(max_width=f"{self.cfg['preview_max_px']}px", display="none"))
        self.preview.add_class("photo-preview")
        self.photo_caption = w.HTML('<span class="photo-caption">尚未选择照片 no photo yet</span>')
        photo_box = w.VBox(
            [
                w.HTML("<b>示例照片 Sample photos</b> <small>(click to choose)</small>"),
                self.gallery,
                w.HBox([self.upload, w.HTML(f"<small>≤ {self.cfg['max_upload_mb']} MB · JPEG PNG WebP BMP GIF TIFF</small>")],
                       layout=w.Layout(align_items="center")),
                self.photo_caption,
                self.preview,
            ],
            layout=w.Layout(width="580px", margin="0 16px 0 0"),
        )

        # customisation
        from poemlib.instructions import instruction_pool

        try:
            moods = [str(m) for m in instruction_pool().get("moods", [])]
        except Exception:  # noqa: BLE001 - mood suggestions are optional
            moods = []
        try:
            from poemlib.meter import CIPAI_NAMES

            cipai_names = list(CIPAI_NAMES)
        except Exception:  # noqa: BLE001 - the 词牌 list is optional
            cipai_names = []
        narrow = {"description_width": "90px"}
        self.prompt = w.Textarea(
            placeholder="额外要求（可选）例如：以“归”字收尾 · extra instruction (optional)",
            description="提示 Prompt", style=narrow, layout=w.Layout(width="440px", height="56px"),
        )
        self.prompt.add_class("prompt-box")
        self.poem_type = w.Dropdown(options=[("自动 any", "")] + [(t, t) for t in POEM_TYPES], value="",
                                    description="体裁 Form", style=narrow, layout=w.Layout(width="280px"))
        self.cipai = w.Dropdown(options=[("任意词牌 any", "")] + [(n, n) for n in cipai_names], value="",
                                description="词牌", style=narrow, layout=w.Layout(width="280px", display="none"))
        self.poem_type.observe(self._on_poem_type, names="value")
        self.mood = w.Combobox(options=moods, placeholder="如 思乡 / 闲适 (optional)", description="意境 Mood",
                               ensure_option=False, style=narrow, layout=w.Layout(width="280px"))
        t_lo, t_hi = (float(v) for v in sliders["temperature"])
        n_lo, n_hi = (int(v) for v in sliders["max_new_tokens"])
        self.temperature = w.FloatSlider(value=float(defaults["temperature"]), min=t_lo, max=t_hi, step=0.05,
                                         description="温度 Temp", style=narrow, layout=w.Layout(width="400px"))
        self.max_tokens = w.IntSlider(value=int(defaults["max_new_tokens"]), min=n_lo, max=n_hi, step=16,
                                      description="长度 Tokens", style=narrow, layout=w.Layout(width="400px"))
        self.seed = w.IntText(value=int(defaults.get("seed") or 0), description="种子 Seed", style=narrow, layout=w.Layout(width="200px"))
        self.vertical = w.Checkbox(value=bool(self.cfg["vertical_default"]), description="竖排 vertical (right → left)", indent=False)
        self.vertical.observe(lambda _c: self._safe(self.rerender), names="value")

        # backend toggles with their state
        selected = set(self.cfg.get("backends") or self.names)
        self.toggles: dict[str, Any] = {}
        self.state_pills: dict[str, Any] = {}
        rows = []
        for name in self.names:
            toggle = w.Checkbox(value=name in selected, description=BACKEND_TITLES.get(name, name), indent=False,
                                layout=w.Layout(width="290px"))
            toggle.add_class(f"toggle-{name}")
            toggle.observe(lambda _c: self._safe(self._sync_columns), names="value")
            pill = w.HTML(state_pill("loading", "loading models…").replace(">loading<", ">加载中 loading<"))
            self.toggles[name] = toggle
            self.state_pills[name] = pill
            row = w.HBox([toggle, pill])
            row.add_class("backend-row")
            rows.append(row)
        self.generate_button = w.Button(description="作诗 Generate", button_style="danger", icon="feather",
                                        layout=w.Layout(width="200px", height="40px"))
        self.generate_button.add_class("generate-button")
        self.generate_button.on_click(lambda _b: self._safe(self.generate))
        controls = w.VBox(
            [
                w.HTML("<b>定制 Customise</b>"),
                self.prompt,
                self.poem_type,
                self.cipai,
                self.mood,
                self.temperature,
                self.max_tokens,
                w.HBox([self.seed, self.vertical], layout=w.Layout(align_items="center")),
                w.HTML("<b>模型 Backends</b>"),
                *rows,
                self.generate_button,
            ]
        )
        self.status = w.HTML("")
        self.status.add_class("demo-status")

        # result columns
        self.headers: dict[str, Any] = {}
        self.cards: dict[str, Any] = {}
        self.columns: dict[str, Any] = {}
        for name in self.names:
            header = w.HTML(self._header_html(name, BACKEND_TITLES.get(name, name), ""))
            card = w.HTML(render_idle())
            card.add_class("poem-slot")
            column = w.VBox([header, card], layout=w.Layout(flex="1 1 0", min_width="240px"))
            column.add_class("poem-col")
            column.add_class(f"poem-col-{name}")
            self.headers[name], self.cards[name], self.columns[name] = header, card, column
        self.columns_box = w.HBox(list(self.columns.values()), layout=w.Layout(width="100%"))
        self.columns_box.add_class("poem-columns")
        self._sync_columns()

        self.widget = w.VBox(
            [self.style, self.title, self.banner, w.HBox([photo_box, controls], layout=w.Layout(flex_flow="row wrap")),
             self.status, self.columns_box]
        )
        self.widget.add_class("poem-studio")

    def _banner_html(self) -> str:
        if self.profile == "offline":
            return (
                f'<div class="studio-banner"><b>{_e(OFFLINE_BANNER)}</b><br>'
                "<small>No key, no GPU: Gemini answers are our recorded reference poems for the sample photos, replayed by "
                "a loopback server; base and LoRA Qwen are tiny randomly initialised models (their text is mostly noise, "
                'though a tuned adapter often gets the JSON shape right). Set <code>PROFILE = "real"</code> for the real models.'
                "</small></div>"
            )
        return f'<div class="studio-banner"><b>Profile {_e(self.profile)}</b> — Gemini 2.5 Pro · Qwen2.5-VL base · LoRA</div>'

    # -- messages and safety --------------------------------------------------------------------------------------------
    def _set_message(self, level: str, text: str) -> None:
        """Show a message in the status area (level: info | warn | error)."""
        self.last_message = (level, text)
        self.status.value = f'<span class="msg-{_e(level)}">{_e(text)}</span>' if text else ""

    def _safe(self, fn: Any, *args: Any) -> Any:
        """Run a UI callback; any exception becomes a message instead of a dead button."""
        try:
            return fn(*args)
        except Exception as exc:
            log.exception("demo callback failed")
            self._set_message("error", f"出错 error: {type(exc).__name__}: {exc}")
            return None

    # -- photo ---------------------------------------------------------------------------------------------------------
    def _set_photo(self, image: Image.Image, name: str) -> None:
        self.photo, self.photo_name = image, name
        self.preview.value = preview_jpeg(image, int(self.cfg["preview_max_px"]))
        self.preview.layout.display = None
        self.photo_caption.value = f'<span class="photo-caption">已选 chosen: <b>{_e(name)}</b> ({image.width}×{image.height} px after EXIF rotation and the pixel budget)</span>'
        for key, button in self.sample_buttons.items():
            if key == name:
                button.add_class("selected")
            else:
                button.remove_class("selected")

    def select_sample(self, sample: str | os.PathLike[str] | int) -> Path:
        """Choose a sample photo by file name, stem, path or index."""
        path = self._resolve_sample(sample)
        image = prepare_image(path, self.max_pixels, name=path.name)
        self._set_photo(image, path.name)
        self._set_message("info", f"示例照片 sample photo: {path.name}")
        return path

    def _resolve_sample(self, sample: str | os.PathLike[str] | int) -> Path:
        if isinstance(sample, int):
            return self.samples[sample]
        candidate = Path(sample)
        for path in self.samples:
            if path.name == candidate.name or path.stem == str(sample):
                return path
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"no sample photo {sample!r}; known: {[p.name for p in self.samples]}")

    def load_upload(self, data: bytes, name: str = "upload") -> bool:
        """Take an uploaded file: too large, not an image or unsupported gives a message and returns False."""
        size = len(data)
        if size > self.max_upload_bytes:
            self._set_message(
                "error",
                f"上传失败 upload refused: {name} is {size / 1048576:.1f} MB, over the {self.cfg['max_upload_mb']} MB limit",
            )
            return False
        try:
            image = prepare_image(data, self.max_pixels, name=name)
        except BadImageError as exc:
            self._set_message("error", f"图片无法使用 bad upload: {exc}")
            return False
        except MemoryError:
            self._set_message("error", f"图片无法使用 bad upload: {name}: not enough memory to decode it")
            return False
        except Exception as exc:  # noqa: BLE001 - Pillow's rarer decoder errors
            self._set_message("error", f"图片无法使用 bad upload: {name}: cannot be decoded ({type(exc).__name__}: {exc})")
            return False
        self._set_photo(image, name)
        self._set_message("info", f"已上传 uploaded: {name}")
        return True

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        files = change.get("new") or ()
        if not files:
            return
        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        try:
            name = str(item.get("name") or "upload")
            self.load_upload(bytes(item["content"]), name)
        except Exception as exc:  # noqa: BLE001 - a malformed upload message must not kill the widget
            self._set_message("error", f"图片无法使用 bad upload: {type(exc).__name__}: {exc}")
        finally:
            try:
                self.upload.value = ()  # the same file may be uploaded again
            except Exception:  # noqa: BLE001 - older ipywidgets cannot clear the value
                log.debug("cannot clear the upload widget")

    # -- request -------------------------------------------------------------------------------------------------------
    def _on_poem_type(self, change: Mapping[str, Any]) -> None:
        is_ci = change.get("new") == "词"
        self.cipai.layout.display = None if is_ci else "none"
        if not is_ci:
            self.cipai.value = ""

    def current_request(self) -> PoemRequest:
        """The PoemRequest the customisation widgets describe."""
        poem_type = self.poem_type.value or None
        cipai = self.cipai.value if poem_type == "词" else None
        return PoemRequest(
            poem_type=poem_type,
            cipai=cipai or None,
            mood=(self.mood.value or "").strip() or None,
            extra_instruction=(self.prompt.value or "").strip() or None,
            temperature=float(self.temperature.value),
            max_new_tokens=int(self.max_tokens.value),
            seed=int(self.seed.value),
        )

    def selected_backends(self) -> list[str]:
        """Backends whose toggle is on, in column order."""
        return [name for name in self.names if self.toggles[name].value]

    def _sync_columns(self) -> None:
        """Show the columns of the chosen backends only."""
        for name in self.names:
            self.columns[name].layout.display = None if self.toggles[name].value else "none"

    # -- generation ----------------------------------------------------------------------------------------------------
    def generate(self) -> dict[str, Future]:
        """Run every chosen backend concurrently on the chosen photo; each column fills as its backend finishes.

        Returns the futures by backend name (empty with a message when there is nothing to do)."""
        if self.photo is None:
            self._set_message("warn", "请先选择照片 choose a sample photo or upload one first")
            return {}
        try:
            request = self.current_request()
        except ValueError as exc:
            self._set_message("error", f"请求无效 invalid request: {exc}")
            return {}
        names = self.selected_backends()
        if not names:
            self._set_message("warn", "请至少选择一个模型 switch on at least one backend")
            return {}
        with self._lock:
            if self._pending:
                self._set_message("warn", "正在生成 still generating — wait for the columns to fill")
                return {}
            self._run += 1
            run = self._run
            self._pending = len(names)
            self._run_started = time.perf_counter()
        self.generate_button.disabled = True
        image, photo_name = self.photo, self.photo_name
        for name in names:
            self.results.pop(name, None)
            self.cards[name].value = render_busy(self.label_of(name))
        self._set_message("info", f"生成中 generating with {', '.join(names)} for {photo_name}…")
        futures = {}
        for name in names:
            future = self._pool.submit(self._generate_one, run, name, image, request)
            future.add_done_callback(lambda _f, r=run: self._one_done(r))
            futures[name] = future
        return futures

    def _generate_one(self, run: int, name: str, image: Image.Image, request: PoemRequest) -> GenerationResult:
        """One backend's answer (never raises), rendered into its column as soon as it is there."""
        started = time.perf_counter()
        try:
            backend = self._backends_future.result().get(name)
            if backend is None:
                result = GenerationResult(backend=name, error_kind="generation_error", error_message=f"backend {name!r} is not loaded")
            else:
                answers = backend.generate([image], request)
                result = answers[0] if answers else GenerationResult(backend=name, error_kind="empty", error_message="the backend returned no result")
        except Exception as exc:
            log.exception("demo: %s failed", name)
            result = GenerationResult(backend=name, error_kind="generation_error", error_message=f"{type(exc).__name__}: {exc}")
        if not result.latency_s:
            result = result.model_copy(update={"latency_s": time.perf_counter() - started})
        report = meter_report_for(result.annotation, self.mode)
        with self._lock:
            current = run == self._run
            if current:
                self.results[name] = (result, report)
        if current:
            self.cards[name].value = self._card_html(name, result, report)
        return result

    def _card_html(self, name: str, result: GenerationResult, report: Any) -> str:
        try:
            return render_card(result, report, vertical=bool(self.vertical.value), raw_chars=int(self.cfg["raw_excerpt_chars"]))
        except Exception as exc:  # a rendering bug must not leave the spinner up
            log.exception("demo: rendering %s failed", name)
            return f'<div class="poem-card poem-error"><div class="error-title">渲染失败 render failed</div><div class="error-message">{_e(exc)}</div></div>'

    def _one_done(self, run: int) -> None:
        with self._lock:
            if run != self._run:
                return
            self._pending -= 1
            finished = self._pending <= 0
        if finished:
            self.generate_button.disabled = False
            elapsed = time.perf_counter() - self._run_started
            ok = sum(1 for r, _ in self.results.values() if r.ok)
            self._set_message("info", f"完成 done in {elapsed:.1f} s · {ok}/{len(self.results)} poems")

    def generate_sync(
        self,
        sample: str | os.PathLike[str] | int | None = None,
        *,
        backends: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, GenerationResult]:
        """Choose a sample (optional), switch on `backends` (optional), generate and wait: results by backend."""
        if sample is not None:
            self.select_sample(sample)
        if backends is not None:
            wanted = set(backends)
            for name in self.names:
                self.toggles[name].value = name in wanted
        futures = self.generate()
        if not futures:
            raise RuntimeError(self.last_message[1] or "nothing to generate")
        deadline = None if timeout is None else time.monotonic() + timeout
        out = {}
        for name, future in futures.items():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            out[name] = future.result(remaining)
        # the done callbacks run right after the results; let them settle the button and message
        for _ in range(50):
            if not self._pending:
                break
            time.sleep(0.01)
        return out

    def rerender(self) -> None:
        """Redraw every filled card (after the vertical toggle)."""
        for name, (result, report) in list(self.results.items()):
            self.cards[name].value = self._card_html(name, result, report)

    def cards_html(self) -> str:
        """The current cards side by side as standalone HTML (with the stylesheet), for static outputs."""
        cols = []
        for name in self.names:
            if name not in self.results:
                continue
            result, report = self.results[name]
            cols.append(
                f'<div class="poem-col poem-col-{_e(name)}" style="flex:1 1 0;min-width:240px">'
                f'<div class="col-header">{_e(self.label_of(name))}</div>{self._card_html(name, result, report)}</div>'
            )
        return (
            f'<style>{demo_css()}</style><div class="poem-studio"><div class="poem-columns" style="display:flex;gap:10px">'
            f'{"".join(cols)}</div></div>'
        )

    def run_headless(self, enabled: bool | None = None, sample: str | os.PathLike[str] | None = None) -> Any:
        """Generate once for a sample when run headless (papermill), and return the cards as displayable HTML.

        enabled=None means: yes unless the kernel was started by Voilà (the page opens idle). Returns None when idle.
        """
        if enabled is None:
            enabled = not running_in_voila()
        if not enabled:
            return None
        self.generate_sync(sample if sample is not None else self.cfg["headless_sample"])
        from IPython.display import HTML

        return HTML(self.cards_html())

    def close(self) -> None:
        """Stop the worker threads (running generations finish first)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_app(
    backends: Mapping[str, Backend] | None = None,
    profile: str | None = "offline",
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    samples: Sequence[str | os.PathLike[str]] | None = None,
) -> PoemStudio:
    """The demo studio: with `backends` given (e.g. fakes) nothing is loaded; else they load in the background."""
    return PoemStudio(backends, profile=profile, config=config, samples=samples)


__all__ = [
    "BACKEND_ORDER",
    "OFFLINE_BANNER",
    "PoemStudio",
    "build_app",
    "load_demo_config",
    "meter_report_for",
    "render_busy",
    "render_card",
    "render_meter_badges",
    "render_poem_lines",
    "running_in_voila",
]
