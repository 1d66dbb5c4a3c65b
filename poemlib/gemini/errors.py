"""Error classification: an SDK or transport exception becomes an `ApiFailure` (kind, retryable, Retry-After)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TRANSIENT_KINDS = ("rate_limited", "server_error", "timeout")


@dataclass
class ApiFailure:
    """A failed HTTP attempt, classified."""

    kind: str  # rate_limited | server_error | timeout | auth | api_error
    message: str
    retryable: bool
    retry_after_s: float | None = None
    fatal: bool = False  # no later call can succeed either (bad key, unknown model)
    code: int | None = None


class GeminiError(RuntimeError):
    """A Gemini call failed for good; `failure` says how."""

    def __init__(self, message: str, failure: ApiFailure) -> None:
        super().__init__(message)
        self.failure = failure


class GeminiAuthError(GeminiError):
    """The API rejected the key (400 API_KEY_INVALID / 401 / 403): no call with this key can succeed."""


class GeminiRefusedError(GeminiError):
    """A fatal refusal other than the key (e.g. 404: unknown model): every call like this one fails the same way."""


class GeminiCallError(GeminiError):
    """A call that failed after its retries (or at once, when not retryable); raised by `CallResult.unwrap`."""


def _parse_duration(value: str) -> float | None:
    """'38s' / '1.5s' (google.protobuf.Duration JSON)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)s\s*", str(value))
    return float(m.group(1)) if m else None


def _retry_after_header(exc: Any) -> float | None:
    """The Retry-After header (seconds or an HTTP date) of the error's response."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = None
    if headers is not None:
        try:
            value = headers.get("Retry-After") or headers.get("retry-after")
        except Exception:  # noqa: BLE001 - exotic header containers
            value = None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def retry_after_seconds(exc: Any) -> float | None:
    """Retry-After (seconds or HTTP date) from the response headers, else RetryInfo.retryDelay from the error details."""
    header = _retry_after_header(exc)
    if header is not None:
        return header
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            seconds = _parse_duration(item.get("retryDelay", ""))
            if seconds is not None:
                return seconds
    return None


def _is_key_error(exc: Any) -> bool:
    text = json.dumps(getattr(exc, "details", None), default=str) + " " + str(getattr(exc, "message", "") or "")
    return "API_KEY_INVALID" in text or "API key not valid" in text or "API key expired" in text or "API_KEY" in text


def _classify_api_error(exc: Any) -> ApiFailure:
    """An HTTP error answer (google.genai.errors.APIError) by status code."""
    code = int(exc.code or 0)
    message = f"HTTP {code} {exc.status or ''}: {(exc.message or '').strip()[:300]}"
    if code == 429:
        return ApiFailure("rate_limited", message, True, retry_after_seconds(exc), code=code)
    if code in (401, 403) or (code == 400 and _is_key_error(exc)):
        return ApiFailure("auth", message, False, fatal=True, code=code)
    if code == 404:
        return ApiFailure("api_error", message + " (is the model name right?)", False, fatal=True, code=code)
    if code in (408, 504):
        return ApiFailure("timeout", message, True, retry_after_seconds(exc), code=code)
    if code >= 500 or code == 0:
        return ApiFailure("server_error", message, True, retry_after_seconds(exc), code=code)
    return ApiFailure("api_error", message, False, code=code)


def _classify_transport_error(exc: BaseException) -> ApiFailure | None:
    """Connection failures and timeouts of httpx / aiohttp / the OS, else None."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return ApiFailure("timeout", f"request timed out ({type(exc).__name__})", True)
    if isinstance(exc, httpx.TransportError):
        return ApiFailure("server_error", f"connection error: {type(exc).__name__}: {exc}", True)
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return ApiFailure("server_error", f"connection error: {type(exc).__name__}: {exc}", True)
    except ImportError:  # aiohttp is optional for google-genai
        pass
    if isinstance(exc, (ConnectionError, OSError)):
        return ApiFailure("server_error", f"connection error: {type(exc).__name__}: {exc}", True)
    return None


def classify_exception(exc: BaseException) -> ApiFailure:
    """Map an exception from the SDK or the transport to an ApiFailure."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        return _classify_api_error(exc)
    if isinstance(exc, (errors.UnknownApiResponseError, json.JSONDecodeError)):
        # HTTP 200 whose body is not JSON (an HTML error page from a proxy, a cut connection): worth another try
        return ApiFailure("server_error", f"unreadable response body ({type(exc).__name__}: {str(exc)[:200]})", True)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ApiFailure("timeout", "request timed out", True)
    return _classify_transport_error(exc) or ApiFailure("api_error", f"{type(exc).__name__}: {exc}", False)
