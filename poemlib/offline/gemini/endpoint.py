"""Which Gemini endpoint a run talks to: the real API, any compatible base URL, or a loopback replay server that
lives exactly as long as the `with` block (so a failing notebook cell never leaves a server running)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def gemini_endpoint(offline: bool, base_url: str | None = None, **server_options: Any) -> Iterator[str | None]:
    """Yield the base URL to use: `base_url` when given; else, offline, a fresh loopback replay server's (stopped on
    exit, errors included); else None (the real Gemini API)."""
    if base_url is not None or not offline:
        yield base_url
        return
    from poemlib.offline.gemini.server import GeminiServer

    with GeminiServer(mode=server_options.pop("mode", "replay"), **server_options) as server:
        yield server.base_url
