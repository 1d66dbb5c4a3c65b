"""configs/backends.yaml as validated settings: shared generation defaults and one profile per way of running."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from poemlib.config import load_config, load_settings


class GeminiSection(BaseModel):
    """How a profile reaches Gemini: the loopback replay server or the API with a key."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["replay", "api"] | None = None  # None: replay in the offline profile, api elsewhere
    label: str = "Gemini 2.5 Pro"
    annotate_config: str = "annotate"
    api_key_env: str = "GEMINI_API_KEY"
    base_url: str | None = None


class QwenSection(BaseModel):
    """Where base weights (base) or the LoRA adapter (lora) come from; `*_env` names an overriding variable."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    model_dir: str | None = None
    model_dir_env: str | None = None
    adapter_dir: str | None = None
    adapter_dir_env: str | None = None


class ProfileSettings(BaseModel):
    """One profile: runtime of the Qwen engine, where its weights come from, and the Gemini endpoint."""

    model_config = ConfigDict(extra="forbid")

    pixels: str = "tiny"
    batch_size: int = Field(default=8, ge=1)
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens_cap: int | None = None
    cpu_threads: int | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    # a training config (configs/<name>.yaml): the base model and adapter dir are read from it (see registry)
    train_config: str | None = None
    gemini: GeminiSection = Field(default_factory=GeminiSection)
    base: QwenSection = Field(default_factory=QwenSection)
    lora: QwenSection = Field(default_factory=QwenSection)


class BackendsSettings(BaseModel):
    """The whole file: generation defaults shared by every profile, and the profiles."""

    model_config = ConfigDict(extra="forbid")

    generation: dict[str, Any] = Field(default_factory=dict)
    profiles: dict[str, ProfileSettings] = Field(default_factory=dict)


def load_backends_settings(config: str | os.PathLike | None = None) -> BackendsSettings:
    """configs/backends.yaml (or another file of the same shape), validated; errors name the file and fields."""
    return load_settings(BackendsSettings, config, default="backends")


def load_profile(profile: str, config: str | os.PathLike | None = None) -> ProfileSettings:
    """One profile, with the shared generation defaults under its own."""
    settings = load_backends_settings(config)
    if profile not in settings.profiles:
        raise ValueError(f"backends config has no profile {profile!r}; known: {sorted(settings.profiles)}")
    chosen = settings.profiles[profile]
    return chosen.model_copy(update={"generation": {**settings.generation, **chosen.generation}})


def backends_config(config: str | os.PathLike | None = None) -> dict[str, Any]:
    """configs/backends.yaml as a plain mapping (raw, as written)."""
    return load_config(config or "backends")


def profile_config(profile: str, config: str | os.PathLike | None = None) -> dict[str, Any]:
    """One profile as a plain mapping (validated, generation defaults merged in)."""
    return load_profile(profile, config).model_dump()
