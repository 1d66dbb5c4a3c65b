"""The one progress policy: every long loop reports through tqdm (notebook widget in Jupyter, a bar in a terminal)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress_enabled(enabled: bool | None = None) -> bool:
    """Bars show unless turned off by the caller or by POEMLIB_PROGRESS=0 (tests and CI logs)."""
    if enabled is not None:
        return enabled
    return os.environ.get("POEMLIB_PROGRESS", "1") not in ("0", "false", "no")


def progress_bar(total: int | None = None, *, desc: str, unit: str = "it", enabled: bool | None = None, **kwargs: Any) -> Any:
    """A tqdm bar (tqdm.auto: a widget in notebooks); disabled bars accept the same calls and print nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not progress_enabled(enabled), **kwargs)


def track(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", enabled: bool | None = None) -> Iterable[T]:
    """Iterate with a progress bar."""
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    return tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True, disable=not progress_enabled(enabled))
