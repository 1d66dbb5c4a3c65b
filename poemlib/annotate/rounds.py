"""An image's revision rounds as store records: each finished round becomes a durable record, and a record with
rounds still to do gives back the conversation to continue (so a resumed run never repeats a finished round)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from poemlib.annotate.revision import (
    RevisePrompt,
    best_round,
    meter_report,
    revision_message,
    summarise,
)
from poemlib.gemini import Outcome
from poemlib.schema import AnnotationRecord, Revision, Status, TokenUsage


def answer_text(outcome: Outcome) -> str | None:
    """The answer's text as the model turn of the next round (the parsed annotation as JSON when no raw text is kept)."""
    if outcome.annotation is not None:
        return json.dumps(outcome.annotation.model_dump(mode="json"), ensure_ascii=False)
    return outcome.raw_text


def make_round(number: int, outcome: Outcome, *, attempts: int, latency_s: float | None, prompt_version: str | None) -> Revision:
    """One answer as a round, with its meter summary when it holds a poem."""
    meter = None
    if outcome.status is Status.ok:
        meter = summarise(*meter_report(outcome.annotation))
    return Revision(
        round=number,
        status=outcome.status,
        text=answer_text(outcome),
        annotation=outcome.annotation,
        error_kind=outcome.error_kind,  # type: ignore[arg-type]
        error_message=outcome.error_message,
        meter=meter,
        usage=outcome.usage,
        latency_s=None if latency_s is None else round(latency_s, 3),
        attempts=attempts,
        prompt_version=prompt_version,
    )


def with_rounds(base: AnnotationRecord, first: Revision, revisions: list[Revision], *, rounds: int, prompt_version: str) -> AnnotationRecord:
    """The record after these rounds: the best round's annotation, usage / latency / attempts summed over all."""
    every = [first, *revisions]
    best = best_round(every)
    usage = sum((r.usage for r in every), TokenUsage())
    latency = sum(r.latency_s or 0.0 for r in every)
    return base.model_copy(
        update={
            "status": Status.ok,
            "annotation": best.annotation,
            "first_answer": first,
            "revisions": list(revisions),
            "usage": usage,
            "latency_s": round(latency, 3),
            "attempts": sum(r.attempts for r in every),
            "revise_rounds": rounds,
            "revise_prompt_version": prompt_version,
            "created_at": datetime.now(UTC),
        }
    )


def first_round_of(record: AnnotationRecord) -> Revision:
    """Round 0 of a record: its stored first answer, or (a record written without revision) its annotation."""
    if record.first_answer is not None:
        return record.first_answer
    assert record.annotation is not None
    outcome = Outcome(Status.ok, annotation=record.annotation, usage=record.usage)
    return make_round(0, outcome, attempts=record.attempts, latency_s=record.latency_s, prompt_version=None)


def next_message(round_: Revision, prompt: RevisePrompt) -> str | None:
    """The revision message answering this round's poem, or None when it cannot be checked (nothing to name)."""
    report, _error = meter_report(round_.annotation)
    if report is None or report.ok:
        return None
    assert round_.annotation is not None
    return revision_message(report, round_.annotation, prompt)


def continued_contents(first_contents: list[Any], rounds: list[Revision], prompt: RevisePrompt) -> list[Any] | None:
    """The conversation for the next round: the first request, then per ok round its answer and the message naming
    its violations; None when the last ok answer leaves nothing to name."""
    from google.genai import types

    contents = list(first_contents)
    message = None
    for round_ in rounds:
        if round_.status is not Status.ok or round_.text is None:
            continue  # a failed round added no answer to the conversation
        message = next_message(round_, prompt)
        if message is None:
            return None
        contents.append(types.Content(role="model", parts=[types.Part.from_text(text=round_.text)]))
        contents.append(types.Content(role="user", parts=[types.Part.from_text(text=message)]))
    return contents if message is not None else None

