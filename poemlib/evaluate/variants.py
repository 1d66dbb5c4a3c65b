"""Constrained twins of the Qwen backends: `base+格律` and `lora+格律` are the same backends asked with
`constrain=True`, so the evaluation compares each model with and without the 格律 constraint, side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poemlib.schema import GenerationResult, PoemRequest

CONSTRAINED_SUFFIX = "+格律"
CONSTRAINABLE = ("base", "lora")  # the Qwen backends: the only ones whose logits we can mask


class ConstrainedBackend:
    """A backend whose every request is made with constrain=True (name `<inner>+格律`)."""

    def __init__(self, inner: Any, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or f"{inner.name}{CONSTRAINED_SUFFIX}"
        self.label = f"{inner.label} + 格律约束"

    def status(self) -> Any:
        """The wrapped backend's status, under this backend's name."""
        return self.inner.status().model_copy(update={"name": self.name})

    def generate(self, images: Sequence[Any], request: PoemRequest) -> list[GenerationResult]:
        """The wrapped backend's answers to the same request, constrained."""
        return self.inner.generate(images, request.model_copy(update={"constrain": True}))


def with_constrained(backends: Mapping[str, Any]) -> dict[str, Any]:
    """Every backend, each Qwen one followed by its constrained twin: gemini, base, base+格律, lora, lora+格律."""
    out: dict[str, Any] = {}
    for name, backend in backends.items():
        out[name] = backend
        if name in CONSTRAINABLE:
            twin = ConstrainedBackend(backend, f"{name}{CONSTRAINED_SUFFIX}")
            out[twin.name] = twin
    return out


def is_constrained_name(name: str) -> bool:
    """True for a constrained twin's name (`base+格律`, `lora+格律`)."""
    return name.endswith(CONSTRAINED_SUFFIX)
