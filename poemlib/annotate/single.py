"""One image through the annotate request, retries and parsing, synchronously (for other stages)."""

from __future__ import annotations

import time
from typing import Any

from poemlib import gemini
from poemlib.annotate.config import AnnotateConfigSource, load_annotate_config
from poemlib.annotate.errors import AnnotateAuthError
from poemlib.annotate.prepare import image_to_jpeg
from poemlib.annotate.prompt import generation_config, load_prompt
from poemlib.images import BadImageError
from poemlib.schema import GenerationResult


def annotate_image(client: Any, config: AnnotateConfigSource, source: Any, *, instruction: str | None = None, backend: str = "gemini") -> GenerationResult:
    """One image (path, bytes or PIL image) through the annotate stage's request, retries and parsing.

    Per-image problems come back as an error result, but a rejected key raises AnnotateAuthError.
    """
    cfg = load_annotate_config(config)
    prompt = load_prompt(cfg)
    started = time.monotonic()
    try:
        jpeg = image_to_jpeg(source, cfg)
    except BadImageError as exc:
        return GenerationResult(backend=backend, error_kind="bad_image", error_message=str(exc))
    contents = gemini.user_contents(jpeg, instruction or prompt.user)
    gen_config = generation_config(cfg, prompt)
    try:
        result = gemini.call_with_retries_sync(
            lambda: client.models.generate_content(model=cfg.model, contents=contents, config=gen_config), cfg.gemini, what="annotate an image"
        )
    except gemini.GeminiAuthError as exc:
        raise AnnotateAuthError(f"Gemini rejected the API key ({exc.failure.message}).") from exc
    except gemini.GeminiRefusedError as exc:
        result = gemini.CallResult(failure=exc.failure)
    latency = time.monotonic() - started
    if result.failure is not None:
        return GenerationResult(backend=backend, error_kind=result.failure.kind, error_message=result.failure.message, latency_s=latency)  # type: ignore[arg-type]
    outcome = gemini.interpret_response(result.value)
    return GenerationResult(
        backend=backend,
        annotation=outcome.annotation,
        error_kind=outcome.error_kind,  # type: ignore[arg-type]
        error_message=outcome.error_message,
        raw_text=outcome.raw_text or (outcome.annotation.target_text() if outcome.annotation else ""),
        latency_s=latency,
        usage=outcome.usage,
    )
