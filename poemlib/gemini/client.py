"""google-genai client construction (SDK retries off: `poemlib.gemini.retry` applies ours)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poemlib.gemini.settings import GeminiSettings

if TYPE_CHECKING:  # google-genai is imported lazily (it is slow to import)
    from google import genai

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"


def make_client(settings: GeminiSettings | None = None, *, api_key: str, base_url: str | None = None) -> genai.Client:
    """A client for the Gemini Developer API, or `base_url` (else `settings.base_url`) when given."""
    from google import genai
    from google.genai import types

    settings = settings or GeminiSettings()
    http_options = types.HttpOptions(base_url=base_url or settings.base_url, timeout=int(settings.timeout_s * 1000))
    return genai.Client(api_key=api_key, vertexai=False, http_options=http_options)


async def aclose_quietly(client: Any) -> None:
    """Close a client's async transport; closing must never mask a run's own result or error."""
    try:
        await client.aio.aclose()
    except Exception:  # noqa: BLE001, S110 - nothing useful to do with a failed close
        pass
