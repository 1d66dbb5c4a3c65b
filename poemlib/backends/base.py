"""The backend protocol and what every backend shares: status, error results, parsing a model's answer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ValidationError

from poemlib.config import describe_validation_error
from poemlib.schema import (
    GenerationResult,
    JSONExtractionError,
    PoemRequest,
    TokenUsage,
    parse_annotation_text,
)

ImageInput = str | os.PathLike | bytes | Image.Image
BACKEND_NAMES = ("gemini", "base", "lora")


class BackendStatus(BaseModel):
    """Whether a backend can answer, and if not, why."""

    name: str
    state: str  # "ready" | "offline replay" | "no key" | "model path missing" | "adapter missing" | "error"
    detail: str = ""
    ready: bool


@runtime_checkable
class Backend(Protocol):
    """What evaluation and the demo call."""

    name: str
    label: str

    def status(self) -> BackendStatus: ...

    def generate(self, images: Sequence[ImageInput], request: PoemRequest) -> list[GenerationResult]: ...


def image_label(source: ImageInput, index: int) -> str:
    """A name for error messages: the path, or the image's position in the call."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<image {index}>"


def result_from_text(
    backend: str,
    text: str,
    *,
    latency_s: float = 0.0,
    usage: TokenUsage | None = None,
    truncated: bool = False,
) -> GenerationResult:
    """Parse a model's answer into a GenerationResult: annotation, or error_kind empty/invalid_json/schema_invalid/truncated."""
    common = {"backend": backend, "raw_text": text, "latency_s": latency_s, "usage": usage or TokenUsage()}
    if not text.strip():
        kind = "truncated" if truncated else "empty"
        return GenerationResult(**common, error_kind=kind, error_message="the model answered with no text")
    try:
        annotation = parse_annotation_text(text)
    except JSONExtractionError as exc:
        kind = "truncated" if truncated else "invalid_json"
        return GenerationResult(**common, error_kind=kind, error_message=str(exc))
    except ValidationError as exc:
        message = describe_validation_error(exc, limit=10, root="annotation")[:500]
        return GenerationResult(**common, error_kind="schema_invalid", error_message=message)
    return GenerationResult(**common, annotation=annotation)


def error_results(backend: str, n: int, kind: str, message: str) -> list[GenerationResult]:
    """n identical error results (a backend that cannot answer)."""
    return [GenerationResult(backend=backend, error_kind=kind, error_message=message) for _ in range(n)]


class UnavailableBackend:
    """A backend that could not load: status explains, generate returns error results."""

    def __init__(self, name: str, label: str, state: str, detail: str, error_kind: str = "generation_error") -> None:
        self.name = name
        self.label = label
        self._status = BackendStatus(name=name, state=state, detail=detail, ready=False)
        self.error_kind = error_kind

    def status(self) -> BackendStatus:
        """Why it cannot answer."""
        return self._status

    def update_status(self, status: BackendStatus) -> None:
        """Take a newer reason (a retried load that still failed keeps this object, with the new reason)."""
        self._status = status

    def generate(self, images: Sequence[ImageInput], request: PoemRequest) -> list[GenerationResult]:
        """An error result per image, never an exception."""
        message = f"{self.label} unavailable ({self._status.state}): {self._status.detail}"
        return error_results(self.name, len(images), self.error_kind, message)
