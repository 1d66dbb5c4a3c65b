"""The one retry path, through the real google-genai client against the loopback server."""

from __future__ import annotations

import asyncio
import time

import pytest

from poemlib import gemini
from poemlib.samples import draft_by_name, reference_by_name
from poemlib.schema import Status, gemini_response_schema
from tests.gemini.conftest import GeminiServer

FAST = gemini.GeminiSettings(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0.0, max_attempts=3, timeout_s=5.0, rpm=None)


def _ask(client, settings: gemini.GeminiSettings, jpeg: bytes):
    """A coroutine factory: one structured poem request for `jpeg`."""
    config = gemini.generation_config(settings, "你是一位诗人。", gemini_response_schema())
    return lambda: client.aio.models.generate_content(model=settings.model, contents=gemini.user_contents(jpeg, "请作诗"), config=config)


async def _call(server, jpeg: bytes, settings=FAST, key: str = "offline", **kwargs) -> gemini.CallResult:
    client = gemini.make_client(settings, api_key=key, base_url=server.base_url)
    try:
        return await gemini.call_with_retries(_ask(client, settings, jpeg), settings, **kwargs)
    finally:
        await gemini.aclose_quietly(client)


def test_429_waits_retry_after_then_succeeds(cat_jpeg) -> None:
    stats = gemini.CallStats()
    with GeminiServer(mode="replay", script=["429", "ok"], retry_after_s=0.4) as server:
        started = time.monotonic()
        result = asyncio.run(_call(server, cat_jpeg, what="write a poem", stats=stats))
        elapsed = time.monotonic() - started
        assert server.stats.requests == 2
    assert result.ok and result.attempts == 2 and (stats.requests, stats.retries) == (2, 1)
    assert elapsed >= 0.4  # the server's Retry-After, not the 0.01 s backoff
    outcome = gemini.interpret_response(result.value)
    # the replay's first answer for a sample photo is our flawed draft of its reference
    assert outcome.status is Status.ok and outcome.annotation == draft_by_name()["cat_chelsea.jpg"]


def test_5xx_is_retried_until_attempts_run_out(cat_jpeg) -> None:
    with GeminiServer(mode="replay", script=["500", "503", "500"]) as server:
        result = asyncio.run(_call(server, cat_jpeg))
        assert server.stats.requests == 3
    assert not result.ok and result.attempts == 3 and result.value is None
    assert result.failure.kind == "server_error" and result.failure.code == 500 and "HTTP 500" in result.failure.message
    with pytest.raises(gemini.GeminiCallError, match="could not write a poem: HTTP 500"):
        result.unwrap("write a poem")


def test_a_rejected_key_raises_at_once_without_retry(cat_jpeg) -> None:
    with GeminiServer(mode="replay", valid_keys={"right-key"}) as server:
        with pytest.raises(gemini.GeminiAuthError, match="API key") as info:
            asyncio.run(_call(server, cat_jpeg, key="sk-wrong-secret", what="write a poem"))
        assert server.stats.requests == 1
    assert info.value.failure.kind == "auth" and "sk-wrong-secret" not in str(info.value)


def test_a_bad_request_is_not_retried(cat_jpeg) -> None:
    with GeminiServer(mode="replay", script=["400"]) as server:
        result = asyncio.run(_call(server, cat_jpeg))
        assert server.stats.requests == 1
    assert (result.failure.kind, result.failure.retryable, result.attempts) == ("api_error", False, 1)


def test_the_limiter_spaces_attempts_retries_included(cat_jpeg) -> None:
    settings = FAST.model_copy(update={"rpm": 2, "rate_window_s": 0.5, "rate_margin_s": 0.05})
    limiter = gemini.RateLimiter.from_settings(settings)
    with GeminiServer(mode="replay", script=["503", "ok", "ok"]) as server:
        async def two_calls() -> list[gemini.CallResult]:
            client = gemini.make_client(settings, api_key="offline", base_url=server.base_url)
            try:
                return [await gemini.call_with_retries(_ask(client, settings, cat_jpeg), settings, limiter=limiter) for _ in range(2)]
            finally:
                await gemini.aclose_quietly(client)

        results = asyncio.run(two_calls())
        assert server.stats.requests == 3
        assert gemini.peak_in_window(server.stats.request_times, 0.5) <= 2
        assert max(server.stats.request_times) - min(server.stats.request_times) >= 0.5  # the third waited for the window
    assert [r.attempts for r in results] == [2, 1] and all(r.ok for r in results)


def test_sync_path_has_the_same_policy(cat_jpeg) -> None:
    stats = gemini.CallStats()
    config = gemini.generation_config(FAST, "你是一位诗人。", gemini_response_schema())
    with GeminiServer(mode="replay", script=["503", "ok"]) as server:
        client = gemini.make_client(FAST, api_key="offline", base_url=server.base_url)
        result = gemini.call_with_retries_sync(
            lambda: client.models.generate_content(model=FAST.model, contents=gemini.user_contents(cat_jpeg, "请作诗"), config=config), FAST, stats=stats
        )
        assert server.stats.requests == 2
    assert result.ok and result.attempts == 2 and stats.retries == 1
    assert gemini.interpret_response(result.value).annotation.poem_title == reference_by_name()["cat_chelsea.jpg"].poem_title


def test_sync_path_raises_on_a_rejected_key(cat_jpeg) -> None:
    with GeminiServer(mode="replay", valid_keys={"right-key"}) as server:
        client = gemini.make_client(FAST, api_key="wrong", base_url=server.base_url)
        with pytest.raises(gemini.GeminiAuthError, match="while trying to judge"):
            gemini.call_with_retries_sync(lambda: client.models.generate_content(model=FAST.model, contents=["hi"]), FAST, what="judge")
        assert server.stats.requests == 1


def test_backoff_is_exponential_capped_and_at_least_retry_after() -> None:
    settings = FAST.model_copy(update={"backoff_initial_s": 1.0, "backoff_max_s": 60.0, "jitter_s": 0.0})
    assert [gemini.backoff_delay(settings, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert gemini.backoff_delay(settings.model_copy(update={"backoff_max_s": 10.0}), 9) == 10.0
    assert gemini.backoff_delay(FAST, 1, 38.0) >= 38.0
