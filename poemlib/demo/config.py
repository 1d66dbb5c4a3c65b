"""configs/demo.yaml as a validated settings model: every default of the studio lives here, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from poemlib.config import load_settings

BACKEND_ORDER = ("gemini", "base", "lora")
BACKEND_TITLES = {"gemini": "Gemini", "base": "Qwen base", "lora": "Qwen LoRA"}
OFFLINE_BANNER = "离线演示 Offline demo — replayed Gemini, tiny random Qwen models"
# Voilà sets these in the environment of the kernels it starts.
VOILA_ENV_VARS = ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_SERVER_URL", "VOILA_REQUEST_URL")


class RequestDefaults(BaseModel):
    """Where the customisation fields start."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_new_tokens: int = Field(default=512, ge=1)
    seed: int | None = 0
    constrain: bool = Field(default=False, description="格律约束 switch: Qwen columns decode under the 格律 constraint")


class SliderRanges(BaseModel):
    """(low, high) of the temperature and length sliders."""

    model_config = ConfigDict(extra="forbid")

    temperature: tuple[float, float] = (0.0, 1.5)
    max_new_tokens: tuple[int, int] = (16, 2048)


class DemoSettings(BaseModel):
    """The demo studio's settings (configs/demo.yaml)."""

    model_config = ConfigDict(extra="forbid")

    profile: str = "offline"
    backends: list[str] = Field(default_factory=lambda: list(BACKEND_ORDER), description="switched on at start")
    max_upload_mb: float = Field(default=10, gt=0)
    pixels: str = Field(default="auto", description='configs/vision.yaml profile, or "auto": the backends profile\'s')
    preview_max_px: int = Field(default=320, gt=0)
    thumb_size: tuple[int, int] = (104, 78)
    vertical_default: bool = False
    meter_mode: Literal["pingshui", "xinyun"] = "pingshui"
    raw_excerpt_chars: int = Field(default=240, ge=0)
    defaults: RequestDefaults = Field(default_factory=RequestDefaults)
    sliders: SliderRanges = Field(default_factory=SliderRanges)
    headless_sample: str = "cat_chelsea.jpg"

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)


def load_demo_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | DemoSettings | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> DemoSettings:
    """configs/demo.yaml (or another file, a mapping or settings), validated; missing keys take their defaults."""
    return load_settings(DemoSettings, config, default="demo", overrides=overrides)


def running_in_voila() -> bool:
    """True inside a kernel started by Voilà (it sets VOILA_* variables in the kernel's environment)."""
    return any(key in os.environ for key in VOILA_ENV_VARS)
