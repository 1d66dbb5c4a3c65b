"""The annotate stage's run-level errors (per-image problems are records, never exceptions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poemlib.annotate.summary import RunSummary


class AnnotateError(RuntimeError):
    """The run could not proceed; `summary` holds what was done before it stopped (None before any work)."""

    def __init__(self, message: str, summary: RunSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class AnnotateConfigError(AnnotateError):
    """Missing key, bad configuration or images folder: nothing was requested."""


class AnnotateAuthError(AnnotateError):
    """The API rejected the key (400 API_KEY_INVALID / 401 / 403): the run stopped at once."""


class AnnotateRunError(AnnotateError):
    """The run was stopped because every request failed the same way (e.g. model not found, bad request)."""
