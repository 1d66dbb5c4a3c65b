"""The shared Gemini layer: every Gemini call (annotate, the Gemini backend, the LLM judge) goes through it.

Public API:

- settings: `GeminiSettings` (model, base_url, sampling, timeout_s, retry policy, rpm/window, concurrency)
- keys: `resolve_api_key(api_key=None, *, env_file=None) -> str | None` (explicit, $GEMINI_API_KEY/$GOOGLE_API_KEY,
  untracked .env; never printed), `key_for_endpoint(api_key, base_url)` (the offline key when an endpoint is given),
  `is_loopback(base_url)`, `no_key_message()`, `OFFLINE_API_KEY`, `KEY_ENV_VARS`
- client: `make_client(settings=None, *, api_key, base_url=None) -> genai.Client`, `aclose_quietly(client)`,
  `DEFAULT_ENDPOINT`
- requests: `generation_config(settings, system_instruction, response_schema=None, *, temperature=None)`,
  `user_contents(jpeg, instruction)`, `rest_request(settings, system_instruction, jpeg, instruction, response_schema=None)`
- responses: `interpret_response(response, parse=parse_answer) -> Outcome` (status, annotation/value, error_kind,
  error_message, raw_text, usage, finish_reason), `parse_answer(text, parsed=None) -> Annotation`, `usage_from`,
  `answer_text`, `schema_error_message`, `SAFETY_FINISH`
- errors: `classify_exception(exc) -> ApiFailure` (kind rate_limited/server_error/timeout/auth/api_error, retryable,
  retry_after_s, fatal), `retry_after_seconds(exc)`, `GeminiError` > `GeminiAuthError`, `GeminiRefusedError`,
  `GeminiCallError`; `TRANSIENT_KINDS`
- retry: `await call_with_retries(fn, settings, *, limiter=None, what=..., stats=None) -> CallResult` and
  `call_with_retries_sync(fn, settings, *, what=..., stats=None) -> CallResult` (value / failure / attempts;
  `.unwrap(what)`; a rejected key raises GeminiAuthError, a fatal refusal GeminiRefusedError), `backoff_delay`,
  `CallStats` (requests, retries)
- ratelimit: `RateLimiter(limit, window_s=60, *, margin_s=None)` / `RateLimiter.from_settings(settings)`,
  `peak_in_window(times, window_s)`

google-genai is imported lazily, inside the functions that need it.
"""

from poemlib.gemini.client import DEFAULT_ENDPOINT, aclose_quietly, make_client
from poemlib.gemini.errors import (
    TRANSIENT_KINDS,
    ApiFailure,
    GeminiAuthError,
    GeminiCallError,
    GeminiError,
    GeminiRefusedError,
    classify_exception,
    retry_after_seconds,
)
from poemlib.gemini.keys import (
    KEY_ENV_VARS,
    OFFLINE_API_KEY,
    is_loopback,
    key_for_endpoint,
    no_key_message,
    resolve_api_key,
)
from poemlib.gemini.ratelimit import RateLimiter, peak_in_window
from poemlib.gemini.requests import generation_config, rest_request, user_contents
from poemlib.gemini.responses import (
    SAFETY_FINISH,
    Outcome,
    answer_text,
    interpret_response,
    parse_answer,
    schema_error_message,
    usage_from,
)
from poemlib.gemini.retry import (
    CallResult,
    CallStats,
    backoff_delay,
    call_with_retries,
    call_with_retries_sync,
)
from poemlib.gemini.settings import GeminiSettings

__all__ = [
    "DEFAULT_ENDPOINT",
    "KEY_ENV_VARS",
    "OFFLINE_API_KEY",
    "SAFETY_FINISH",
    "TRANSIENT_KINDS",
    "ApiFailure",
    "CallResult",
    "CallStats",
    "GeminiAuthError",
    "GeminiCallError",
    "GeminiError",
    "GeminiRefusedError",
    "GeminiSettings",
    "Outcome",
    "RateLimiter",
    "aclose_quietly",
    "answer_text",
    "backoff_delay",
    "call_with_retries",
    "call_with_retries_sync",
    "classify_exception",
    "generation_config",
    "interpret_response",
    "is_loopback",
    "key_for_endpoint",
    "make_client",
    "no_key_message",
    "parse_answer",
    "peak_in_window",
    "resolve_api_key",
    "rest_request",
    "retry_after_seconds",
    "schema_error_message",
    "usage_from",
    "user_contents",
]
