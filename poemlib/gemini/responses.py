"""Response interpretation: a GenerateContentResponse becomes an `Outcome` (parsed answer, or why it failed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from poemlib.config import describe_validation_error
from poemlib.schema import (
    Annotation,
    JSONExtractionError,
    Status,
    TokenUsage,
    extract_json_object,
)

# finishReason values that mean "stopped by a safety/policy filter".
SAFETY_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"}


@dataclass
class Outcome:
    """What one answer amounts to: ok / unfit with a parsed value, or failed with a kind.

    `annotation` is set when the parser returned an Annotation (ok or unfit by its create_condition); `value` holds
    whatever the parser returned (the Annotation itself, or e.g. a judge's scores).
    """

    status: Status
    annotation: Annotation | None = None
    error_kind: str | None = None
    error_message: str | None = None
    raw_text: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish_reason: str | None = None
    value: Any = None

    @classmethod
    def failed(cls, kind: str, message: str, *, raw_text: str | None = None, usage: TokenUsage | None = None, finish_reason: str | None = None) -> Outcome:
        """A failed outcome of `kind`."""
        return cls(Status.failed, error_kind=kind, error_message=message, raw_text=raw_text or None, usage=usage or TokenUsage(), finish_reason=finish_reason)


def enum_name(value: Any) -> str | None:
    """An SDK enum's wire name ('STOP'), or the value itself as text."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def usage_from(metadata: Any) -> TokenUsage:
    """TokenUsage from a response's usage_metadata (missing counts are 0)."""
    if metadata is None:
        return TokenUsage()

    def n(name: str) -> int:
        return int(getattr(metadata, name, None) or 0)

    prompt, output, thinking, cached = n("prompt_token_count"), n("candidates_token_count"), n("thoughts_token_count"), n("cached_content_token_count")
    return TokenUsage(prompt_tokens=prompt, output_tokens=output, thinking_tokens=thinking, cached_tokens=cached, total_tokens=n("total_token_count") or prompt + output + thinking)


def schema_error_message(exc: ValidationError) -> str:
    """'N schema error(s): field: message; …' for an answer that does not fit its schema."""
    return f"{len(exc.errors())} schema error(s): {describe_validation_error(exc)}"


def parse_answer(text: str, parsed: Any = None) -> Annotation:
    """The SDK's parsed value when it is an object, else a tolerant JSON extraction (fenced or not); then the schema.

    Raises JSONExtractionError (no JSON object) or ValidationError (does not fit Annotation).
    """
    obj = parsed if isinstance(parsed, dict) else extract_json_object(text)
    if "create_condition" not in obj:
        obj = {"create_condition": True, **obj}
    return Annotation.model_validate(obj)


def answer_text(candidate: Any) -> str:
    """The candidate's answer text (thought parts left out)."""
    parts = getattr(getattr(candidate, "content", None), "parts", None) or []
    return "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))


def _stopped(finish: str, candidate: Any, text: str, usage: TokenUsage) -> Outcome | None:
    """The failed outcome for a safety / recitation / MAX_TOKENS / empty stop, else None."""
    if finish in SAFETY_FINISH:
        ratings = getattr(candidate, "safety_ratings", None) or []
        flagged = [enum_name(r.category) for r in ratings if getattr(r, "blocked", False) or enum_name(getattr(r, "probability", None)) == "HIGH"]
        detail = f" ({', '.join(str(c) for c in flagged)})" if flagged else ""
        return Outcome.failed("safety", f"answer stopped by finishReason {finish}{detail}", raw_text=text, usage=usage, finish_reason=finish)
    if finish == "RECITATION":
        return Outcome.failed("recitation", "answer stopped by finishReason RECITATION (too close to an existing text)", raw_text=text, usage=usage, finish_reason=finish)
    if finish == "MAX_TOKENS":
        message = f"answer cut at max_output_tokens (finishReason MAX_TOKENS; {usage.output_tokens} output + {usage.thinking_tokens} thinking tokens)"
        return Outcome.failed("truncated", message, raw_text=text, usage=usage, finish_reason=finish)
    if not text.strip():
        return Outcome.failed("empty", f"the answer has no text (finishReason {finish})", usage=usage, finish_reason=finish)
    return None


def interpret_response(response: Any, parse: Callable[[str, Any], Any] = parse_answer) -> Outcome:
    """Classify a GenerateContentResponse: blocked prompt, safety stop, truncation, empty, bad JSON, or a parsed answer.

    `parse(text, sdk_parsed)` turns the text into the caller's value; it raises JSONExtractionError for no JSON and
    ValidationError / ValueError for an answer that does not fit.
    """
    usage = usage_from(getattr(response, "usage_metadata", None))
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        feedback = getattr(response, "prompt_feedback", None)
        reason = enum_name(getattr(feedback, "block_reason", None)) or "no candidates"
        extra = getattr(feedback, "block_reason_message", None)
        return Outcome.failed("blocked", f"prompt blocked: {reason}" + (f" ({extra})" if extra else ""), usage=usage)
    candidate = candidates[0]
    finish = enum_name(getattr(candidate, "finish_reason", None)) or "FINISH_REASON_UNSPECIFIED"
    text = answer_text(candidate)
    stopped = _stopped(finish, candidate, text, usage)
    if stopped is not None:
        return stopped
    try:
        value = parse(text, getattr(response, "parsed", None))
    except JSONExtractionError as exc:
        return Outcome.failed("invalid_json", str(exc), raw_text=text, usage=usage, finish_reason=finish)
    except ValidationError as exc:
        return Outcome.failed("schema_invalid", schema_error_message(exc), raw_text=text, usage=usage, finish_reason=finish)
    except ValueError as exc:
        return Outcome.failed("schema_invalid", str(exc), raw_text=text, usage=usage, finish_reason=finish)
    if isinstance(value, Annotation):
        status = Status.ok if value.create_condition else Status.unfit
        return Outcome(status, annotation=value, usage=usage, finish_reason=finish, value=value)
    return Outcome(Status.ok, usage=usage, finish_reason=finish, value=value, raw_text=None)
