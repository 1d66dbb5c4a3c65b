"""格律-constrained decoding for one Qwen engine: constraint engines built once per requested form and kept (their
mask caches live in them), wrapped in a fresh LogitsProcessor per generate() call.

A constrained request's token budget is raised to the longest answer the constraint may need: the constraint
guarantees the answer ends within its budget, so the raise is bounded, and a request capped below that minimum (the
offline profile caps the tiny model at 128 tokens) still gets its poem instead of an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from poemlib.schema import PoemRequest

if TYPE_CHECKING:  # pragma: no cover
    from poemlib.constrain import ConstraintEngine, PoemConstraintProcessor, Vocabulary


class ConstraintUnavailable(ValueError):
    """The requested form cannot be constrained (e.g. 词 before the 词谱 exists, an unknown 词牌)."""


@dataclass(frozen=True)
class ConstrainedCall:
    """What one constrained generate() call needs: the processor and the (possibly raised) token budget."""

    processor: PoemConstraintProcessor
    max_new_tokens: int
    raised_from: int | None = None  # the request's own budget, when the constraint needed more


class ConstraintEngines:
    """Constraint engines for one tokenizer and logits width, keyed by (poem_type, cipai). allow_unfit keeps the
    unfit answer (`create_condition: false`) open, as the issue asks; False forces a poem (acceptance runs)."""

    def __init__(self, tokenizer: Any, logits_size: int, *, mode: str = "pingshui", allow_unfit: bool = True) -> None:
        self.tokenizer = tokenizer
        self.logits_size = int(logits_size)
        self.mode = mode
        self.allow_unfit = allow_unfit
        self._vocabulary: Vocabulary | None = None
        self._engines: dict[tuple[str | None, str | None], ConstraintEngine] = {}
        self._lock = threading.Lock()

    def vocabulary(self) -> Vocabulary:
        """The tokenizer's bytes per token, read once (reading 151k tokens takes a second or two)."""
        if self._vocabulary is None:
            from poemlib.constrain import vocabulary_from_tokenizer

            self._vocabulary = vocabulary_from_tokenizer(self.tokenizer, self.logits_size)
        return self._vocabulary

    def engine_for(self, request: PoemRequest) -> ConstraintEngine:
        """The kept engine for the request's form; ConstraintUnavailable naming the form when it cannot be built."""
        from poemlib.constrain import build_engine, constrained_forms

        key = (request.poem_type, request.cipai)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                try:
                    engine = build_engine(self.vocabulary(), request.poem_type, request.cipai, mode=self.mode,
                                          allow_unfit=self.allow_unfit, logits_size=self.logits_size)
                except ValueError as exc:
                    form = request.poem_type + (f"（{request.cipai}）" if request.cipai else "") if request.poem_type else "any form"
                    raise ConstraintUnavailable(f"格律约束 cannot constrain {form}: {exc} (constrained forms: "
                                                f"{', '.join(constrained_forms())})") from exc
                self._engines[key] = engine
        return engine

    def call_for(self, request: PoemRequest, max_new_tokens: int) -> ConstrainedCall:
        """A fresh processor for one generate() call, its budget raised to the engine's minimum when below it."""
        from poemlib.constrain import PoemConstraintProcessor

        engine = self.engine_for(request)
        need = int(engine.program.worst[0])
        budget = max(int(max_new_tokens), need)
        raised = int(max_new_tokens) if budget > max_new_tokens else None
        return ConstrainedCall(PoemConstraintProcessor(engine, budget), budget, raised)

    def minimum_tokens(self, request: PoemRequest) -> int:
        """The fewest new tokens a constrained answer of this request may need (its engine's worst case)."""
        return int(self.engine_for(request).program.worst[0])
