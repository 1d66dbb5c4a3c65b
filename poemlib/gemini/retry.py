"""The one retry path for Gemini calls (tenacity): exponential backoff with jitter, never shorter than Retry-After.

`call_with_retries` (async, optionally rate-limited, a timeout per attempt) and `call_with_retries_sync` share the
policy below. Retryable failures (429, 5xx, timeouts, connection errors, unreadable bodies) are retried up to
`settings.max_attempts`; a rejected key raises `GeminiAuthError` and another fatal refusal `GeminiRefusedError`
at once; any other failure comes back in the `CallResult`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from poemlib.gemini.errors import (
    ApiFailure,
    GeminiAuthError,
    GeminiCallError,
    GeminiRefusedError,
    classify_exception,
)
from poemlib.gemini.ratelimit import RateLimiter
from poemlib.gemini.settings import GeminiSettings

log = logging.getLogger(__name__)


@dataclass
class CallStats:
    """HTTP attempts and retries across the calls that share it (one run)."""

    requests: int = 0
    retries: int = 0


@dataclass
class CallResult:
    """A call's answer (`value`), or its last failure, and how many attempts it took."""

    value: Any = None
    failure: ApiFailure | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """True when the call answered."""
        return self.failure is None

    def unwrap(self, what: str = "call Gemini") -> Any:
        """The value, or GeminiCallError('could not <what>: …')."""
        if self.failure is not None:
            raise GeminiCallError(f"could not {what}: {self.failure.message}", self.failure)
        return self.value


def backoff_delay(settings: GeminiSettings, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): exponential, capped, plus jitter; at least Retry-After."""
    rng = rng or random
    base = min(settings.backoff_max_s, settings.backoff_initial_s * settings.backoff_multiplier ** (attempt - 1))
    delay = base + rng.uniform(0, settings.jitter_s)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s + rng.uniform(0, min(settings.jitter_s, 0.25 * max(retry_after_s, 0.1))))
    return delay


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and classify_exception(exc).retryable


def _policy(settings: GeminiSettings, what: str, stats: CallStats | None, rng: random.Random | None) -> dict[str, Any]:
    """tenacity arguments shared by the async and the sync path."""

    def wait(state: RetryCallState) -> float:
        failure = classify_exception(state.outcome.exception())  # type: ignore[union-attr, arg-type]
        return backoff_delay(settings, state.attempt_number, failure.retry_after_s, rng)

    def before_sleep(state: RetryCallState) -> None:
        if stats is not None:
            stats.retries += 1
        failure = classify_exception(state.outcome.exception())  # type: ignore[union-attr, arg-type]
        log.info("%s: attempt %d failed (%s); retrying in %.2f s", what, state.attempt_number, failure.message, state.upcoming_sleep)

    return {
        "stop": stop_after_attempt(settings.max_attempts),
        "wait": wait,
        "retry": retry_if_exception(_retryable),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def _failed(exc: Exception, attempts: int, what: str) -> CallResult:
    """The CallResult of a final failure; fatal ones raise instead."""
    failure = classify_exception(exc)
    if failure.kind == "auth":
        raise GeminiAuthError(f"Gemini rejected the API key while trying to {what} ({failure.message}).", failure) from exc
    if failure.fatal:
        raise GeminiRefusedError(f"Gemini refused to {what} ({failure.message}).", failure) from exc
    return CallResult(None, failure, attempts)


async def call_with_retries(
    fn: Callable[[], Awaitable[Any]],
    settings: GeminiSettings,
    *,
    limiter: RateLimiter | None = None,
    what: str = "call Gemini",
    stats: CallStats | None = None,
    rng: random.Random | None = None,
) -> CallResult:
    """Await `fn()` under the retry policy; each attempt takes a limiter slot and times out after timeout_s + 5 s."""
    attempts = 0

    async def attempt() -> Any:
        nonlocal attempts
        if limiter is not None:
            await limiter.acquire()
        attempts += 1
        if stats is not None:
            stats.requests += 1
        return await asyncio.wait_for(fn(), timeout=settings.timeout_s + 5)

    try:
        value = await AsyncRetrying(sleep=asyncio.sleep, **_policy(settings, what, stats, rng))(attempt)
    except Exception as exc:  # noqa: BLE001 - classified; CancelledError (a BaseException) passes through
        return _failed(exc, attempts, what)
    return CallResult(value, None, attempts)


def call_with_retries_sync(
    fn: Callable[[], Any],
    settings: GeminiSettings,
    *,
    what: str = "call Gemini",
    stats: CallStats | None = None,
    rng: random.Random | None = None,
) -> CallResult:
    """`call_with_retries` for blocking code (threads): the same policy, no limiter; the client's timeout applies."""
    attempts = 0

    def attempt() -> Any:
        nonlocal attempts
        attempts += 1
        if stats is not None:
            stats.requests += 1
        return fn()

    try:
        value = Retrying(sleep=time.sleep, **_policy(settings, what, stats, rng))(attempt)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc, attempts, what)
    return CallResult(value, None, attempts)
