"""`GeminiSettings`: what every Gemini call needs (model, endpoint, sampling, timeouts, retry policy, rate limit)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GeminiSettings(BaseModel):
    """One caller's Gemini settings; the annotate config, the backends and the judge each map onto it."""

    model_config = ConfigDict(extra="forbid")

    model: str = "gemini-2.5-pro"
    base_url: str | None = None  # None: the Gemini Developer API; else a compatible endpoint (the loopback server)
    temperature: float = 0.8
    thinking_budget: int | None = 2048
    max_output_tokens: int = 8192
    timeout_s: float = Field(default=180.0, gt=0)  # per HTTP request
    # Retry policy: exponential backoff plus random jitter, never shorter than the server's Retry-After / RetryInfo.
    max_attempts: int = Field(default=6, ge=1)
    backoff_initial_s: float = 2.0
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 60.0
    jitter_s: float = 1.0
    # Throughput: requests in flight, and at most `rpm` HTTP requests in any `rate_window_s` window.
    concurrency: int = Field(default=16, ge=1)
    rpm: int | None = Field(default=150, ge=1)
    rate_window_s: float = Field(default=60.0, gt=0)
    rate_margin_s: float = Field(default=0.6, ge=0)  # slack for the delay between taking a slot and the request reaching the server


GEMINI_SETTING_NAMES = tuple(GeminiSettings.model_fields)
