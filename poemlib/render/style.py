"""The renderer's stylesheet and a standalone page around rendered HTML."""

from __future__ import annotations

from functools import cache

from poemlib.config import RESOURCES_DIR

STYLESHEET_PATH = RESOURCES_DIR / "render" / "poem.css"


@cache
def stylesheet() -> str:
    """The one poem stylesheet (poemlib/resources/render/poem.css)."""
    return STYLESHEET_PATH.read_text(encoding="utf-8")


def styled(fragment: str) -> str:
    """A fragment with the stylesheet inlined, for notebook output (IPython.display.HTML)."""
    return f"<style>{stylesheet()}</style>{fragment}"
