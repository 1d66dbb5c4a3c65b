"""The annotate stage's side of `poemlib.gemini`: key and client for a run, Gemini errors as annotate errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from poemlib import gemini
from poemlib.annotate.config import (
    AnnotateConfig,
    AnnotateConfigSource,
    load_annotate_config,
)
from poemlib.annotate.errors import (
    AnnotateAuthError,
    AnnotateConfigError,
    AnnotateRunError,
)

if TYPE_CHECKING:
    from google import genai


def make_client(config: AnnotateConfigSource = None, *, api_key: str, base_url: str | None = None) -> genai.Client:
    """A google-genai client with the annotate config's timeout, for the Gemini API or a compatible base_url."""
    return gemini.make_client(load_annotate_config(config).gemini, api_key=api_key, base_url=base_url)


def run_key(api_key: str | None, base_url: str | None) -> str:
    """The key of a run (the offline key for an explicit endpoint); no key and no endpoint: AnnotateConfigError."""
    key = gemini.key_for_endpoint(api_key, base_url)
    if key is None:
        raise AnnotateConfigError(gemini.no_key_message())
    return key


def open_client(cfg: AnnotateConfig, client: Any, key: str | None, base_url: str | None) -> tuple[Any, bool]:
    """(client, owned): the caller's client, else a new one for the run's key (from `run_key`) that the run closes."""
    if client is not None:
        return client, False
    return make_client(cfg, api_key=key or gemini.OFFLINE_API_KEY, base_url=base_url), True


async def call_or_raise(cfg: AnnotateConfig, limiter: gemini.RateLimiter, fn: Callable[[], Awaitable[Any]], what: str) -> Any:
    """A batch/files call under the retry policy; fatal and exhausted failures raise AnnotateAuthError / AnnotateRunError."""
    try:
        result = await gemini.call_with_retries(fn, cfg.gemini, limiter=limiter, what=what)
    except gemini.GeminiAuthError as exc:
        raise AnnotateAuthError(f"Gemini rejected the API key while trying to {what} ({exc.failure.message}).") from exc
    except gemini.GeminiRefusedError as exc:
        raise AnnotateRunError(f"could not {what}: {exc.failure.message}") from exc
    try:
        return result.unwrap(what)
    except gemini.GeminiCallError as exc:
        raise AnnotateRunError(str(exc)) from exc
