"""The studio's state engine, without widgets: what is selected, the request, concurrent generation, per-column state.

    ctrl = StudioController(backends)          # or None: load configs/backends.yaml's profile in the background
    ctrl.select_sample("cat_chelsea.jpg")
    ctrl.customise(poem_type="词", cipai="浣溪沙", temperature=0.3, seed=7)
    results = ctrl.generate_sync(timeout=60)   # {backend: GenerationResult}; ctrl.columns[name] holds state + report

The widgets (`poemlib.demo.studio`) only forward their values here and redraw on the `ControllerEvents` it sends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from poemlib.demo.config import (
    BACKEND_ORDER,
    BACKEND_TITLES,
    DemoSettings,
    load_demo_config,
)
from poemlib.demo.photos import (
    UploadError,
    find_samples,
    pixel_budget,
    prepare_upload,
    resolve_sample,
)
from poemlib.demo.state import Column, ControllerEvents, Customisation
from poemlib.images import prepare_image
from poemlib.meter import MeterCheckError, check_annotation
from poemlib.schema import GenerationResult, PoemRequest

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.backends import Backend, BackendStatus
    from poemlib.meter import MeterReport

log = logging.getLogger(__name__)

LOADING_MESSAGE = "模型加载中 loading models in the background… you can choose a photo meanwhile"


def meter_report(result: GenerationResult, mode: str) -> MeterReport | None:
    """The 格律 report of an answer's poem; None for no poem, an unfit answer or a check that fails."""
    try:
        return check_annotation(result.annotation, mode=mode)
    except MeterCheckError:  # the card still shows the poem without marks
        log.exception("meter check failed for %s's poem", result.backend)
        return None


def _quiet_progress_bars() -> None:
    """No "Loading weights" progress widgets from a background thread landing in some cell of the page."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - transformers missing: nothing to quiet
        log.debug("transformers progress bars left as they are")


class StudioController:
    """The demo's state and behaviour; `start()` (automatic unless start=False) takes or loads the backends."""

    def __init__(
        self,
        backends: Mapping[str, Backend] | None = None,
        *,
        profile: str | None = None,
        config: str | os.PathLike[str] | Mapping[str, Any] | DemoSettings | None = None,
        samples: Sequence[str | os.PathLike[str]] | None = None,
        events: ControllerEvents | None = None,
        start: bool = True,
    ) -> None:
        self.settings = load_demo_config(config)
        self.profile = profile or self.settings.profile
        self.names: list[str] = list(backends) if backends is not None else list(BACKEND_ORDER)
        self.max_pixels = pixel_budget(self.settings.pixels, self.profile)
        self.samples: list[Path] = find_samples(samples)
        self.events = events or ControllerEvents()
        self.customisation = Customisation.from_defaults(self.settings.defaults)
        switched_on = set(self.settings.backends or self.names)
        self.enabled: dict[str, bool] = {name: name in switched_on for name in self.names}
        self.photo: Image.Image | None = None
        self.photo_name: str | None = None
        self.columns: dict[str, Column] = {name: Column() for name in self.names}
        self.last_message: tuple[str, str] = ("info", "")
        self._given = dict(backends) if backends is not None else None
        self._backends_future: Future[dict[str, Backend]] = Future()
        self._started = False
        self._run = 0
        self._pending = 0
        self._run_started = 0.0
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.names)), thread_name_prefix="poem-demo")
        if start:
            self.start()

    # -- backends ---------------------------------------------------------------------------------------------------
    def start(self) -> StudioController:
        """Take the given backends at once, or load the profile's in a background thread (once)."""
        if self._started:
            return self
        self._started = True
        if self._given is not None:
            self._backends_future.set_result(self._given)
            self._backends_loaded()
        else:
            self.message("info", LOADING_MESSAGE)
            threading.Thread(target=self._load_backends, name="poem-demo-loader", daemon=True).start()
        return self

    def _load_backends(self) -> None:
        """Load the backends (models load once per process; base and LoRA share weights)."""
        try:
            from poemlib.backends import load_backends

            _quiet_progress_bars()
            self._backends_future.set_result(load_backends(self.names, profile=self.profile))
        except BaseException as exc:  # a config error: every column will say so
            log.exception("demo: loading backends failed")
            self._backends_future.set_exception(exc)
        self._backends_loaded()

    def _backends_loaded(self) -> None:
        self.events.backends_loaded()
        exc = self.load_error()
        if exc is not None:
            self.message("error", f"模型加载失败 loading backends failed: {type(exc).__name__}: {exc}")
        elif self.last_message[1] == LOADING_MESSAGE:
            self.message("info", "模型已就绪 backends ready" + (f" · {self.photo_name}" if self.photo_name else ""))

    @property
    def backends(self) -> dict[str, Backend]:
        """The loaded backends (waits for the background load)."""
        return self._backends_future.result()

    def loaded(self) -> bool:
        """True once loading has finished, successfully or not."""
        return self._backends_future.done()

    def load_error(self) -> BaseException | None:
        """Why loading the backends failed (None while loading or when it worked)."""
        return self._backends_future.exception() if self._backends_future.done() else None

    def wait_ready(self, timeout: float | None = None) -> dict[str, BackendStatus]:
        """Wait for the backends to load; their statuses by name."""
        self._backends_future.exception(timeout)
        return self.statuses()

    def statuses(self) -> dict[str, BackendStatus]:
        """Each loaded backend's status (empty while loading or after a failed load)."""
        if not self.loaded() or self.load_error() is not None:
            return {}
        out = {}
        for name, backend in self.backends.items():
            try:
                out[name] = backend.status()
            except Exception as exc:  # noqa: BLE001 - shown as the backend's state
                from poemlib.backends import BackendStatus

                out[name] = BackendStatus(name=name, state="error", detail=f"{type(exc).__name__}: {exc}", ready=False)
        return out

    def label_of(self, name: str) -> str:
        """A backend's label (its short title while loading)."""
        if self.loaded() and self.load_error() is None:
            backend = self.backends.get(name)
            if backend is not None:
                return str(getattr(backend, "label", BACKEND_TITLES.get(name, name)))
        return BACKEND_TITLES.get(name, name)

    # -- messages, photo, request, selection ------------------------------------------------------------------------
    def message(self, level: str, text: str) -> None:
        """Set the status message (level: info | warn | error)."""
        self.last_message = (level, text)
        self.events.message(level, text)

    def _set_photo(self, image: Image.Image, name: str) -> None:
        self.photo, self.photo_name = image, name
        self.events.photo_changed()

    def select_sample(self, sample: str | os.PathLike[str] | int) -> Path:
        """Choose a sample photo by file name, stem, path or index (prepared once: EXIF, RGB, pixel budget)."""
        path = resolve_sample(self.samples, sample)
        self._set_photo(prepare_image(path, self.max_pixels, name=path.name), path.name)
        self.message("info", f"示例照片 sample photo: {path.name}")
        return path

    def load_upload(self, data: bytes, name: str = "upload") -> bool:
        """Take an uploaded file: too large, not an image or unsupported gives a message and returns False."""
        try:
            image = prepare_upload(data, name, max_bytes=self.settings.max_upload_bytes, max_pixels=self.max_pixels,
                                   max_mb=self.settings.max_upload_mb)
        except UploadError as exc:
            self.message("error", str(exc))
            return False
        self._set_photo(image, name)
        self.message("info", f"已上传 uploaded: {name}")
        return True

    def customise(self, **fields: Any) -> Customisation:
        """Change customisation fields by name (poem_type, cipai, mood, extra_instruction, temperature, …)."""
        self.customisation = dataclasses.replace(self.customisation, **fields)
        return self.customisation

    def request(self) -> PoemRequest:
        """The PoemRequest of the current customisation."""
        return self.customisation.request()

    def set_enabled(self, name: str, on: bool) -> None:
        """Switch one backend's column on or off."""
        if name not in self.enabled:
            raise KeyError(f"no backend {name!r}; known: {self.names}")
        self.enabled[name] = bool(on)

    def selected_backends(self) -> list[str]:
        """Backends switched on, in column order."""
        return [name for name in self.names if self.enabled[name]]

    # -- generation -------------------------------------------------------------------------------------------------
    def _refusal(self) -> tuple[str, str] | None:
        """Why a run cannot start now (level, message), or None."""
        if self.photo is None:
            return "warn", "请先选择照片 choose a sample photo or upload one first"
        try:
            self.request()
        except ValueError as exc:
            return "error", f"请求无效 invalid request: {exc}"
        if not self.selected_backends():
            return "warn", "请至少选择一个模型 switch on at least one backend"
        return None

    def generate(self) -> dict[str, Future[GenerationResult]]:
        """Run every chosen backend concurrently on the chosen photo; each column fills as its backend finishes.

        Returns the futures by backend name (empty with a message when there is nothing to do)."""
        refusal = self._refusal()
        if refusal is not None:
            self.message(*refusal)
            return {}
        request, names = self.request(), self.selected_backends()
        with self._lock:
            if self._pending:
                self.message("warn", "正在生成 still generating — wait for the columns to fill")
                return {}
            self._run += 1
            run = self._run
            self._pending = len(names)
            self._run_started = time.perf_counter()
            for name in names:
                self.columns[name] = Column("busy")
        self.events.running_changed(True)
        for name in names:
            self.events.column_changed(name)
        self.message("info", f"生成中 generating with {', '.join(names)} for {self.photo_name}…")
        image = self.photo
        futures = {}
        for name in names:
            future = self._pool.submit(self._generate_one, run, name, image, request)
            future.add_done_callback(lambda _f, r=run: self._one_done(r))
            futures[name] = future
        return futures

    def _answer(self, name: str, image: Image.Image, request: PoemRequest) -> GenerationResult:
        """One backend's answer; any failure becomes an error result (never raises)."""
        started = time.perf_counter()
        try:
            backend = self.backends.get(name)
            if backend is None:
                result = GenerationResult(backend=name, error_kind="generation_error", error_message=f"backend {name!r} is not loaded")
            else:
                answers = backend.generate([image], request)
                result = answers[0] if answers else GenerationResult(backend=name, error_kind="empty", error_message="the backend returned no result")
        except Exception as exc:  # one backend's failure stays in its column
            log.exception("demo: %s failed", name)
            result = GenerationResult(backend=name, error_kind="generation_error", error_message=f"{type(exc).__name__}: {exc}")
        if not result.latency_s:
            result = result.model_copy(update={"latency_s": time.perf_counter() - started})
        return result

    def _generate_one(self, run: int, name: str, image: Image.Image, request: PoemRequest) -> GenerationResult:
        """Generate for one column and fill it, unless a newer run replaced this one."""
        result = self._answer(name, image, request)
        report = meter_report(result, self.settings.meter_mode)
        with self._lock:
            current = run == self._run
            if current:
                self.columns[name] = Column("done" if result.ok else "failed", result, report)
        if current:
            self.events.column_changed(name)
        return result

    def _one_done(self, run: int) -> None:
        with self._lock:
            if run != self._run:
                return
            self._pending -= 1
            finished = self._pending <= 0
        if finished:
            results = self.results()
            elapsed = time.perf_counter() - self._run_started
            self.events.running_changed(False)
            self.message("info", f"完成 done in {elapsed:.1f} s · {sum(r.ok for r in results.values())}/{len(results)} poems")

    def running(self) -> bool:
        """True while a run has columns still generating."""
        return self._pending > 0

    def results(self) -> dict[str, GenerationResult]:
        """The answers shown in the columns, by backend (columns never run or still busy are left out)."""
        return {name: col.result for name, col in self.columns.items() if col.result is not None and col.phase != "busy"}

    def generate_sync(
        self,
        sample: str | os.PathLike[str] | int | None = None,
        *,
        backends: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, GenerationResult]:
        """Choose a sample (optional), switch on exactly `backends` (optional), generate and wait: results by backend."""
        if sample is not None:
            self.select_sample(sample)
        if backends is not None:
            wanted = set(backends)
            for name in self.names:
                self.set_enabled(name, name in wanted)
        futures = self.generate()
        if not futures:
            raise RuntimeError(self.last_message[1] or "nothing to generate")
        deadline = None if timeout is None else time.monotonic() + timeout
        out = {}
        for name, future in futures.items():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            out[name] = future.result(remaining)
        # the done callbacks run right after the results; let them settle the run state and message
        for _ in range(50):
            if not self._pending:
                break
            time.sleep(0.01)
        return out

    def close(self) -> None:
        """Stop the worker threads (running generations finish first)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
