"""格律-guaranteed generation: a constraint that lets a model write only answers that parse as our annotation JSON and
whose poem passes `poemlib.meter.check` for its form.

    from poemlib.constrain import build_logits_processor
    processor = build_logits_processor(tokenizer, PoemRequest(poem_type="七言绝句"), max_new_tokens=256)
    model.generate(**inputs, max_new_tokens=256, logits_processor=LogitsProcessorList([processor]))

Layering: sits above poemlib.meter (imports meter, schema, config only); stage modules (backends, evaluate, demo)
import it, never the reverse.
"""

from __future__ import annotations

from typing import Any

from poemlib.constrain.engine import Allowed, ConstraintEngine, State
from poemlib.constrain.form import (
    FormFamily,
    FormSpec,
    LineSpec,
    RhymeSet,
    regular_family,
)
from poemlib.constrain.processor import PoemConstraintProcessor
from poemlib.constrain.program import answer_program
from poemlib.constrain.tables import TokenTable, token_table
from poemlib.constrain.vocab import (
    Vocabulary,
    vocabulary_from_tiktoken,
    vocabulary_from_tokenizer,
)
from poemlib.meter.regulated import FORMS
from poemlib.schema import PoemRequest

__all__ = [
    "Allowed",
    "ConstraintEngine",
    "FormFamily",
    "FormSpec",
    "LineSpec",
    "PoemConstraintProcessor",
    "RhymeSet",
    "State",
    "TokenTable",
    "Vocabulary",
    "build_engine",
    "build_logits_processor",
    "constrained_forms",
    "form_families",
    "token_table",
    "vocabulary_from_tiktoken",
    "vocabulary_from_tokenizer",
]


def constrained_forms() -> tuple[str, ...]:
    """poem_type values the engine can constrain today (词 waits for the 词谱 data in poemlib.meter)."""
    return tuple(FORMS)


def form_families(table: TokenTable, poem_type: str | None = None, cipai: str | None = None) -> list[FormFamily]:
    """The form families a request allows: its type, or every constrained type when none is requested."""
    ping_groups = frozenset(table.group_masks)
    if poem_type is None:
        return [regular_family(t, ping_groups) for t in FORMS]
    if poem_type in FORMS:
        return [regular_family(poem_type, ping_groups)]
    if poem_type == "词":
        raise ValueError(f"词{f'（{cipai}）' if cipai else ''}: constrained 词 needs the 词谱 (per-position 平仄 and rhyme) that poemlib.meter does not provide yet")
    raise ValueError(f"unknown poem_type {poem_type!r}; constrained forms are {', '.join(FORMS)}")


def _vocabulary(source: Any, logits_size: int | None) -> Vocabulary:
    """A Vocabulary from itself, a TokenTable's, or a Hugging Face tokenizer."""
    if isinstance(source, Vocabulary):
        return source
    return vocabulary_from_tokenizer(source, logits_size)


def build_engine(
    tokenizer_or_vocab: Any,
    poem_type: str | None = None,
    cipai: str | None = None,
    *,
    mode: str = "pingshui",
    allow_unfit: bool = True,
    logits_size: int | None = None,
) -> ConstraintEngine:
    """The constraint engine for a tokenizer (or Vocabulary) and a requested form (None: the model picks)."""
    table = token_table(_vocabulary(tokenizer_or_vocab, logits_size), mode)
    program = answer_program(form_families(table, poem_type, cipai), allow_unfit)
    return ConstraintEngine(table, program)


def build_logits_processor(
    tokenizer_or_vocab: Any,
    request: PoemRequest,
    *,
    max_new_tokens: int | None = None,
    mode: str = "pingshui",
    allow_unfit: bool = True,
    logits_size: int | None = None,
) -> PoemConstraintProcessor:
    """A LogitsProcessor for one generate() call of `request` (its poem_type/cipai; max_new_tokens defaults to the
    request's). ValueError when the budget cannot hold the longest constrained answer."""
    engine = build_engine(tokenizer_or_vocab, request.poem_type, request.cipai, mode=mode, allow_unfit=allow_unfit, logits_size=logits_size)
    budget = int(max_new_tokens if max_new_tokens is not None else request.max_new_tokens)
    need = engine.program.worst[0]
    if budget < need:
        raise ValueError(f"max_new_tokens={budget} is too small for a constrained {request.poem_type or 'answer'}: it may need {need} tokens")
    return PoemConstraintProcessor(engine, budget)
