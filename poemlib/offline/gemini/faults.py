"""Fault kinds, the per-call fault plan (script, per-image rules, seeded draw) and how each fault looks on the wire."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from poemlib.offline.gemini.wire import SAFETY_CATEGORIES, Answer, error_answer

# Drawn at random; the other kinds (recitation, bad_body, 400, 403, 504) apply only when named.
ALL_FAULTS = ("429", "500", "503", "non_json", "safety", "max_tokens", "blocked", "empty", "slow")
FAULT_KINDS: dict[str, str] = {
    "ok": "no fault: the replayed answer",
    "429": "HTTP 429 RESOURCE_EXHAUSTED with a Retry-After header and a google.rpc.RetryInfo retryDelay",
    "500": "HTTP 500 INTERNAL",
    "503": "HTTP 503 UNAVAILABLE (model overloaded)",
    "504": "HTTP 504 DEADLINE_EXCEEDED",
    "400": "HTTP 400 INVALID_ARGUMENT (request rejected)",
    "403": "HTTP 403 PERMISSION_DENIED",
    "non_json": "HTTP 200, finishReason STOP, but the text is prose with no JSON object",
    "safety": "HTTP 200, a candidate with finishReason SAFETY, safetyRatings and no content",
    "recitation": "HTTP 200, a candidate with finishReason RECITATION and no content",
    "max_tokens": "HTTP 200, finishReason MAX_TOKENS and the JSON text cut in half",
    "blocked": "HTTP 200, no candidates, promptFeedback.blockReason SAFETY",
    "empty": "HTTP 200, a candidate with finishReason STOP whose content has no parts",
    "slow": "waits slow_s seconds, then the normal answer",
    "bad_body": "HTTP 200 whose body is HTML, not JSON (a misbehaving proxy)",
}
HTTP_FAULTS = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission"),
    "429": (
        429,
        "RESOURCE_EXHAUSTED",
        (
            "You exceeded your current quota, please check your plan and billing details. For more information on "
            "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
        ),
    ),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "504": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
# Faults answered with HTTP 200 but no answer text: the body's candidate (or prompt feedback) says why.
SILENT_FAULTS = ("blocked", "safety", "recitation", "empty")
PROSE_ANSWER = (
    "这张照片很有意境：远处的光影与近处的景物相映成趣，令人想起古人登高望远的情怀。"
    "可以围绕秋日、远眺与思乡来构思一首七言绝句，先写景，再借景抒情。"
)
BAD_GATEWAY_HTML = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


def _parse_rule(value: str) -> tuple[str, int | None]:
    """'kind' → (kind, None): always; 'kind*N' → (kind, N): the first N requests."""
    kind, _, count = str(value).partition("*")
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
    if not count:
        return kind, None
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"bad fault rule {value!r}: expected 'kind' or 'kind*N'") from None
    if n < 0:
        raise ValueError(f"bad fault rule {value!r}: N must be >= 0")
    return kind, n


class FaultPlan:
    """Decides each model call's fault: `script` queue first, else per-image rule, else a seeded random draw."""

    def __init__(
        self,
        *,
        fault_rate: float = 0.0,
        faults: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        script: Sequence[str] | None = None,
        fault_by_digest: Mapping[str, str] | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
        faults = tuple(f.strip() for f in faults if f and f.strip())
        for kind in faults:
            if kind not in FAULT_KINDS or kind == "ok":
                raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(set(FAULT_KINDS) - {'ok'})}")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        self.fault_rate = fault_rate
        self.faults = faults
        self.seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._script: deque[str] = deque()
        self.extend_script(script or ())
        # digest -> [kind, calls left or None for always]
        self._rules: dict[str, list[Any]] = {digest: list(_parse_rule(rule)) for digest, rule in (fault_by_digest or {}).items()}

    def extend_script(self, kinds: Iterable[str]) -> None:
        """Queue more per-request outcomes (fault kinds or 'ok'), consumed one per model call."""
        kinds = list(kinds)
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r} in script; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._script.extend(kinds)

    @property
    def script_remaining(self) -> int:
        """Scripted outcomes not yet consumed."""
        return len(self._script)

    @property
    def active(self) -> bool:
        """True when any fault source is configured."""
        return bool(self._script or self._rules or self.fault_rate > 0)

    def _by_rule(self, digests: Sequence[str]) -> str | None:
        """The per-image rule's outcome for the first digest that has one (caller holds the lock)."""
        for digest in digests:
            rule = self._rules.get(digest)
            if rule is None:
                continue
            kind, left = rule
            if left is None:
                return kind
            if left > 0:
                rule[1] = left - 1
                return kind
            return "ok"
        return None

    def draw(self, digests: Sequence[str]) -> str:
        """The outcome for one model call on an image known by these digests (identity first)."""
        with self._lock:
            if self._script:
                return self._script.popleft()
            by_rule = self._by_rule(digests)
            if by_rule is not None:
                return by_rule
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
            return "ok"


# ---------------------------------------------------------------------------
# What each fault looks like
# ---------------------------------------------------------------------------


def _quota_details(model: str, retry_after_s: float) -> list[dict[str, Any]]:
    """The details Gemini attaches to a 429: the quota hit, a help link and RetryInfo.retryDelay."""
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
        "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute",
        "quotaDimensions": {"location": "global", "model": model},
    }
    help_link = {"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
    return [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [help_link]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_s:g}s"},
    ]


def transport_fault(kind: str, model: str, retry_after_s: float) -> Answer | None:
    """The answer of an HTTP-level fault (an error status or a non-JSON body); None for any other kind."""
    if kind == "bad_body":
        return Answer(200, BAD_GATEWAY_HTML, kind)
    if kind not in HTTP_FAULTS:
        return None
    code, status, message = HTTP_FAULTS[kind]
    if kind != "429":
        return error_answer(code, status, message, kind)
    retry_after = str(int(retry_after_s)) if float(retry_after_s).is_integer() else f"{retry_after_s:g}"
    return error_answer(code, status, message, kind, _quota_details(model, retry_after_s), {"Retry-After": retry_after})


def _blocking_ratings() -> list[dict[str, Any]]:
    """Safety ratings with the first category HIGH and blocked, the others NEGLIGIBLE."""
    rest = [{"category": c, "probability": "NEGLIGIBLE"} for c in SAFETY_CATEGORIES[1:]]
    return [{"category": SAFETY_CATEGORIES[0], "probability": "HIGH", "blocked": True}, *rest]


def silent_fault_body(kind: str) -> tuple[dict[str, Any], bool]:
    """(the body of a SILENT_FAULTS answer before usage, whether thinking tokens were spent)."""
    if kind == "blocked":
        return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _blocking_ratings()}}, False
    if kind in ("safety", "recitation"):
        candidate: dict[str, Any] = {"finishReason": kind.upper(), "index": 0}
        if kind == "safety":
            candidate["safetyRatings"] = _blocking_ratings()
        return {"candidates": [candidate]}, True
    if kind == "empty":
        return {"candidates": [{"content": {"role": "model"}, "finishReason": "STOP", "index": 0}]}, True
    raise ValueError(f"{kind!r} is not a silent fault; those are {SILENT_FAULTS}")


def spoil_text(kind: str, text: str, outcome: str) -> tuple[str, str, str]:
    """(text, finishReason, outcome) after a text fault: prose instead of JSON, or JSON cut at MAX_TOKENS."""
    if kind == "non_json":
        return PROSE_ANSWER, "STOP", kind
    if kind == "max_tokens":
        return text[: max(1, len(text) // 2)], "MAX_TOKENS", kind
    if kind == "slow":
        return text, "STOP", kind
    return text, "STOP", outcome
