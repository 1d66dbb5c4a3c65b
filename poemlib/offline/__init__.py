"""Offline stand-ins that speak the real protocols: a tiny Qwen2.5-VL and a loopback Gemini REST server.

Imports are lazy so that `import poemlib.offline` stays cheap (no torch unless a model is built).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_tiny_qwen": "poemlib.offline.tiny_qwen",
    "ensure_tiny_qwen": "poemlib.offline.tiny_qwen",
    "GeminiServer": "poemlib.offline.gemini",
    "FaultPlan": "poemlib.offline.gemini",
    "serve_forever": "poemlib.offline.gemini",
}


def __getattr__(name: str) -> Any:
    """Import the stand-in on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'poemlib.offline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = list(_EXPORTS)
