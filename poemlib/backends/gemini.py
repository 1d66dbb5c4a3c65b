"""Gemini as a backend: the annotation request (prompt, schema, photo preparation of configs/annotate.yaml) sent
through poemlib.gemini, the one client / retry / response path. Offline it talks to the loopback replay server."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from poemlib import gemini
from poemlib.backends.base import BackendStatus, ImageInput, image_label
from poemlib.images import BadImageError
from poemlib.instructions import render_instruction
from poemlib.schema import GenerationResult, PoemRequest, gemini_response_schema

log = logging.getLogger(__name__)

_REPLAY_SERVER: Any = None
_REPLAY_LOCK = threading.Lock()


def replay_server() -> Any:
    """The loopback Gemini replay server for this process, started on first use and stopped at exit."""
    global _REPLAY_SERVER
    with _REPLAY_LOCK:
        if _REPLAY_SERVER is None:
            import atexit

            from poemlib.offline import GeminiServer

            server = GeminiServer(mode="replay")
            server.__enter__()
            atexit.register(server.__exit__, None, None, None)
            _REPLAY_SERVER = server
        return _REPLAY_SERVER


class GeminiBackend:
    """Gemini with annotation's request (configs/annotate.yaml: model, prompt, schema, photo budget), the user
    instruction rendered from the shared pool for the request's customisation, every call through poemlib.gemini."""

    def __init__(
        self,
        name: str = "gemini",
        label: str = "Gemini 2.5 Pro",
        *,
        api_key: str,
        base_url: str | None = None,
        annotate_config: str | os.PathLike | None = "annotate",
        state: str = "ready",
        max_workers: int = 8,
    ) -> None:
        from poemlib import annotate

        self.name = name
        self.label = label
        self._state = state
        self.base_url = base_url
        self.cfg = annotate.load_annotate_config(annotate_config)
        self.system_instruction = annotate.load_prompt(self.cfg).system
        self.settings = self.cfg.gemini.model_copy(update={"base_url": base_url})
        self.client = gemini.make_client(self.settings, api_key=api_key, base_url=base_url)
        self.max_workers = max(1, min(int(max_workers), int(self.settings.concurrency)))
        self._to_jpeg = annotate.image_to_jpeg

    def status(self) -> BackendStatus:
        """Ready (or offline replay) with the model name and endpoint."""
        where = f" via {self.base_url}" if self.base_url else ""
        return BackendStatus(name=self.name, state=self._state, detail=f"{self.settings.model}{where}", ready=True)

    def request_config(self, request: PoemRequest) -> Any:
        """The generation config: annotation's, with the request's temperature when the request sets one explicitly.

        max_new_tokens and seed are not applied: 2.5 Pro counts its thinking in max_output_tokens (annotation's
        value keeps room for it), and annotation's request carries no seed.
        """
        temperature = request.temperature if "temperature" in request.model_fields_set else None
        return gemini.generation_config(self.settings, self.system_instruction, gemini_response_schema(), temperature=temperature)

    def _one(self, index: int, source: ImageInput, config: Any, instruction: str) -> GenerationResult:
        """One photo: prepared, sent with retries, interpreted; every failure comes back as a result."""
        started = time.monotonic()
        try:
            jpeg = self._to_jpeg(source, self.cfg, name=image_label(source, index))
        except BadImageError as exc:
            return GenerationResult(backend=self.name, error_kind="bad_image", error_message=str(exc))
        contents = gemini.user_contents(jpeg, instruction)
        try:
            call = gemini.call_with_retries_sync(
                lambda: self.client.models.generate_content(model=self.settings.model, contents=contents, config=config),
                self.settings, what=f"generate a poem for image {index}",
            )
        except gemini.GeminiError as exc:  # rejected key or a fatal refusal
            kind = "auth" if isinstance(exc, gemini.GeminiAuthError) else exc.failure.kind
            return GenerationResult(backend=self.name, error_kind=kind, error_message=str(exc), latency_s=time.monotonic() - started)
        if not call.ok:
            return GenerationResult(backend=self.name, error_kind=call.failure.kind, error_message=call.failure.message,
                                    latency_s=time.monotonic() - started)
        outcome = gemini.interpret_response(call.value)
        return GenerationResult(
            backend=self.name,
            annotation=outcome.annotation,
            error_kind=outcome.error_kind,
            error_message=outcome.error_message,
            raw_text=outcome.raw_text or (outcome.annotation.target_text() if outcome.annotation else ""),
            latency_s=time.monotonic() - started,
            usage=outcome.usage,
        )

    def generate(self, images: Sequence[ImageInput], request: PoemRequest) -> list[GenerationResult]:
        """One API call per image, a few in flight at once; results in input order, errors as results.

        `request.constrain` is ignored (the API exposes no logits to mask): results say `constrained=False`."""
        config = self.request_config(request)
        instruction = render_instruction(request)

        def one(item: tuple[int, ImageInput]) -> GenerationResult:
            index, source = item
            try:
                return self._one(index, source, config, instruction)
            except Exception as exc:  # never raise for one image
                log.exception("gemini: image %d failed", index)
                return GenerationResult(backend=self.name, error_kind="api_error", error_message=f"{type(exc).__name__}: {exc}")

        items = list(enumerate(images))
        if len(items) <= 1 or self.max_workers == 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            return list(pool.map(one, items))
