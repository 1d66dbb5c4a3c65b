"""configs/evaluate.yaml as validated settings: the report and the optional LLM judge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from poemlib.config import CONFIG_DIR, load_settings
from poemlib.gemini import GeminiSettings


class ReportSettings(BaseModel):
    """report.html."""

    model_config = ConfigDict(extra="forbid")

    thumbnail_px: int = Field(default=320, ge=32)  # longest side of the photo embedded in the report


class JudgeSettings(GeminiSettings):
    """The LLM judge: Gemini settings (model, retries, rate, endpoint) plus its rubric, photo budget and parallelism."""

    temperature: float = 0.0
    thinking_budget: int | None = None  # the model's own default
    rubric: str = "configs/judge_rubric.md"
    max_pixels: int = Field(default=1_003_520, ge=1)  # the photo sent to the judge (same budget as annotation)
    max_workers: int = Field(default=4, ge=1)


class EvaluateSettings(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    report: ReportSettings = Field(default_factory=ReportSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)


def load_evaluate_settings(source: str | os.PathLike | Mapping[str, Any] | EvaluateSettings | None = None) -> EvaluateSettings:
    """configs/evaluate.yaml (defaults when the file is absent), a path, a mapping or settings."""
    if source is None and not (CONFIG_DIR / "evaluate.yaml").exists():
        return EvaluateSettings()
    return load_settings(EvaluateSettings, source, default="evaluate")
