"""configs/annotate.yaml as a validated model; its Gemini fields map onto `poemlib.gemini.GeminiSettings`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from poemlib.annotate.errors import AnnotateConfigError
from poemlib.config import ConfigError, load_settings
from poemlib.gemini import TRANSIENT_KINDS, GeminiSettings
from poemlib.gemini.settings import GEMINI_SETTING_NAMES


class Prices(BaseModel):
    """USD per 1M tokens; *_long rates apply when a prompt exceeds long_context_tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = 1.25
    input_long: float = 2.50
    output: float = 10.00
    output_long: float = 15.00
    cached_input: float = 0.31
    cached_input_long: float = 0.625
    long_context_tokens: int = 200_000
    batch_discount: float = 0.5


class PromptSettings(BaseModel):
    """Prompt files (in poemlib/resources/prompts/ unless absolute) and the short user instruction."""

    model_config = ConfigDict(extra="forbid")

    version: str = "v1"
    system: str = "system_v1.md"
    guide: str = "guide_v1.md"
    user_instruction: str = "请观看这张照片，依照系统说明与《诗词创作指南》判断是否适合创作；适合则创作一首原创古典诗词并写赏析，只输出 JSON 对象。"
    revise: str = "revise_v1.md"  # the revision message template (string.Template fields, see annotate/revision.py)
    revise_version: str = "v1"


class BatchSettings(BaseModel):
    """Batch API settings: polling, and how requests are split into jobs."""

    model_config = ConfigDict(extra="forbid")

    poll_interval_s: float = 30.0
    input: Literal["auto", "inline", "file"] = "auto"  # auto: inline while it fits, else an uploaded JSONL file
    max_inline_bytes: int = 18_000_000
    max_file_bytes: int = 1_900_000_000
    max_requests_per_job: int = 1000


class AnnotateConfig(BaseModel):
    """configs/annotate.yaml; every field has a default so a partial file works.

    The Gemini fields (model, sampling, timeout, retry policy, rpm, concurrency) sit at the top level as in the file;
    `gemini` gives them as the shared layer's `GeminiSettings`.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = "gemini-2.5-pro"
    temperature: float = 0.8
    thinking_budget: int | None = 2048
    max_output_tokens: int = 8192
    image_max_pixels: int = 1_003_520
    jpeg_quality: int = 88
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    concurrency: int = Field(default=16, ge=1)
    rpm: int | None = Field(default=150, ge=1)
    rate_window_s: float = Field(default=60.0, gt=0)
    rate_margin_s: float = Field(default=0.6, ge=0)  # slack for the delay between taking a slot and the request reaching the server
    timeout_s: float = Field(default=180.0, gt=0)
    prepare_workers: int = Field(default=4, ge=1)
    max_attempts: int = Field(default=6, ge=1)
    backoff_initial_s: float = 2.0
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 60.0
    jitter_s: float = 1.0
    abort_after_consecutive_api_errors: int = 20
    revise_rounds: int = Field(default=2, ge=0)  # revision turns after a poem failing 格律; 0: off
    recover_output_factor: float = Field(default=2.0, ge=1.0)  # a MAX_TOKENS answer is asked once more with this × max_output_tokens
    retry_on_rerun: list[str] = Field(default_factory=lambda: [*TRANSIENT_KINDS, "api_error"])
    prices: Prices = Field(default_factory=Prices)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    @property
    def gemini(self) -> GeminiSettings:
        """The Gemini fields as the shared layer's settings (base_url comes from the caller)."""
        return GeminiSettings.model_validate(self.model_dump(include=set(GEMINI_SETTING_NAMES)))

    def with_overrides(self, **overrides: Any) -> AnnotateConfig:
        """A copy with the non-None overrides applied (validated)."""
        return _load(self.model_dump(), overrides)


AnnotateConfigSource = str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None


def _load(source: AnnotateConfigSource, overrides: Mapping[str, Any] | None = None) -> AnnotateConfig:
    try:
        return load_settings(AnnotateConfig, source, default="annotate", overrides=overrides)
    except ConfigError as exc:
        raise AnnotateConfigError(f"invalid annotate config: {exc}") from exc


def load_annotate_config(config: AnnotateConfigSource = None) -> AnnotateConfig:
    """The annotate config from a name in configs/, a path, a mapping, or an AnnotateConfig (default: configs/annotate.yaml)."""
    return _load(config)
