"""build_app: the demo studio as notebook 06 and `poemlib demo` open it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poemlib.demo.config import DemoSettings
from poemlib.demo.studio import PoemStudio

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.backends import Backend


def build_app(
    backends: Mapping[str, Backend] | None = None,
    profile: str | None = "offline",
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | DemoSettings | None = None,
    samples: Sequence[str | os.PathLike[str]] | None = None,
) -> PoemStudio:
    """The demo studio: with `backends` given (e.g. fakes) nothing is loaded; else they load in the background.

    Headless (papermill) the notebook then calls `app.run_headless()`, which generates once for a sample."""
    return PoemStudio(backends, profile=profile, config=config, samples=samples)
