"""The model call: one GenerateContentRequest (or countTokens) in, one Gemini answer out, faults included."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from poemlib.offline.gemini.faults import (
    SILENT_FAULTS,
    FaultPlan,
    silent_fault_body,
    spoil_text,
    transport_fault,
)
from poemlib.offline.gemini.matching import image_size
from poemlib.offline.gemini.replay import Replay
from poemlib.offline.gemini.stats import StatsBook
from poemlib.offline.gemini.tokens import UsageMeter, prompt_details
from poemlib.offline.gemini.wire import (
    Answer,
    ApiError,
    FileLookup,
    bad_request,
    get_field,
    read_conversation,
)
from poemlib.schema import Annotation

THOUGHT_SUMMARY = "**Reading the photo**\n\nI look at the scene, its light and mood, then choose a form and write the poem as JSON."


def _answer_text(annotation: Annotation, config: Mapping[str, Any]) -> str:
    """The annotation as JSON text; fenced as ```json when the request did not ask for application/json."""
    text = json.dumps(annotation.model_dump(mode="json"), ensure_ascii=False, indent=2)
    mime = str(get_field(config, "responseMimeType", "response_mime_type", default="") or "")
    return text if mime == "application/json" else f"```json\n{text}\n```"


def _thinking_tokens(identity: str | None, budget: Any) -> int:
    """A plausible thinking-token count, fixed per image and capped by the request's thinking budget."""
    if budget == 0:
        return 0
    seed_int = int(hashlib.sha256((identity or "").encode()).hexdigest()[:8], 16)
    thoughts = 256 + seed_int % 769
    return min(thoughts, budget) if isinstance(budget, int) and budget > 0 else thoughts


class Responder:
    """Answers model calls: replay picks the annotation, the fault plan may spoil it, usage is accounted."""

    def __init__(
        self,
        replay: Replay,
        plan: FaultPlan,
        usage: UsageMeter,
        stats: StatsBook,
        lookup_file: FileLookup,
        *,
        retry_after_s: float = 1.0,
        slow_s: float = 3.0,
    ) -> None:
        self.replay = replay
        self.plan = plan
        self.usage = usage
        self.stats = stats
        self.lookup_file = lookup_file
        self.retry_after_s = float(retry_after_s)
        self.slow_s = float(slow_s)
        self._response_counter = 0
        self._lock = threading.Lock()

    def _response_id(self) -> str:
        """A deterministic responseId (the plan's seed and a running count)."""
        with self._lock:
            self._response_counter += 1
            n = self._response_counter
        digest = hashlib.sha256(f"{self.plan.seed}:{n}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:17]).decode("ascii").rstrip("=")

    def generate(self, model: str, body: Mapping[str, Any], *, in_batch: bool = False) -> Answer:
        """The answer to one GenerateContentRequest (faults included); raises ApiError for request errors."""
        model = model.removeprefix("models/")
        config = get_field(body, "generationConfig", "generation_config") or {}
        thinking = get_field(config, "thinkingConfig", "thinking_config") or {}
        budget = get_field(thinking, "thinkingBudget", "thinking_budget")
        if budget == 0 and "pro" in model:
            raise ApiError(bad_request("Budget 0 is invalid. This model only works in thinking mode."))
        conversation = read_conversation(body, self.lookup_file)
        who = self.replay.identify(conversation.images)
        kind = self.plan.draw(who.digests)
        self.stats.digest(who.identity)
        fault = transport_fault(kind, model, self.retry_after_s)
        if fault is not None:
            return fault

        choice = self.replay.choose(who.identity, conversation)
        revision = None if choice.revision is None else {**choice.revision, "fault": None if kind == "ok" else kind}
        self.stats.answered(choice.answer, revision, choice.mismatch)
        text = _answer_text(choice.annotation, config)
        thoughts = _thinking_tokens(who.identity, budget)
        base = {"modelVersion": model, "responseId": self._response_id()}

        def usage(output: str, thought_tokens: int) -> dict[str, Any]:
            return self.usage.usage(conversation.system_text, conversation.user_text, who.sizes, output, thought_tokens)

        if kind in SILENT_FAULTS:
            fragment, thought = silent_fault_body(kind)
            return Answer(200, {**fragment, "usageMetadata": usage("", thoughts if thought else 0), **base}, kind)

        text, finish, outcome = spoil_text(kind, text, choice.outcome)
        parts: list[dict[str, Any]] = []
        if get_field(thinking, "includeThoughts", "include_thoughts") and thoughts:
            parts.append({"text": THOUGHT_SUMMARY, "thought": True})
        parts.append({"text": text})
        candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}
        body_out = {"candidates": [candidate], "usageMetadata": usage(text, thoughts), **base}
        delay = self.slow_s if kind == "slow" and not in_batch else 0.0
        return Answer(200, body_out, outcome, delay_s=delay)

    def count_tokens(self, body: Mapping[str, Any]) -> Answer:
        """The countTokens answer: prompt tokens by modality, no fault, no cache."""
        conversation = read_conversation(body, self.lookup_file)
        sizes = [image_size(data) for data in conversation.images]
        total, details = prompt_details(conversation.system_text, conversation.user_text, sizes)
        return Answer(200, {"totalTokens": total, "promptTokensDetails": details}, "ok")
