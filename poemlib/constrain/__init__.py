"""格律-guaranteed generation: a constraint that lets a model write only answers that parse as our annotation JSON and
whose poem passes `poemlib.meter.check` for its form.

    from poemlib.constrain import build_logits_processor
    processor = build_logits_processor(tokenizer, PoemRequest(poem_type="七言绝句"), max_new_tokens=256)
    model.generate(**inputs, max_new_tokens=256, logits_processor=LogitsProcessorList([processor]))

Layering: sits above poemlib.meter (imports meter, schema, instructions, config only); stage modules (backends, evaluate, demo)
import it, never the reverse.
"""

from __future__ import annotations

from typing import Any

from poemlib.constrain.ci import canonical_cipai, ci_family
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
from poemlib.instructions import common_cipai
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
    "canonical_cipai",
    "ci_family",
    "constrained_forms",
    "form_families",
    "token_table",
    "vocabulary_from_tiktoken",
    "vocabulary_from_tokenizer",
]


def constrained_forms() -> tuple[str, ...]:
    """poem_type values the engine can constrain (词 with a 词牌 from the 词谱)."""
    return (*FORMS, "词")


def form_families(table: TokenTable, poem_type: str | None = None, cipai: str | None = None) -> list[FormFamily]:
    """The form families a request allows: its type (词: its 词牌, or any common 词牌), or, when none is requested,
    every 近体 form and a 词 of any common 词牌 (poemlib.instructions.common_cipai, to keep the head branch small)."""
    if poem_type is None:
        return [regular_family(t, table.ping_groups) for t in FORMS] + [ci_family(name) for name in common_cipai()]
    if poem_type in FORMS:
        return [regular_family(poem_type, table.ping_groups)]
    if poem_type == "词":
        if table.mode != "pingshui":
            raise ValueError(f"constrained 词 rhymes by 词林正韵 (mode 'pingshui'), not {table.mode!r}")
        return [ci_family(cipai)] if cipai else [ci_family(name) for name in common_cipai()]
    raise ValueError(f"unknown poem_type {poem_type!r}; constrained forms are {', '.join(constrained_forms())}")


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
    """The constraint engine for a tokenizer (or Vocabulary) and a requested form (None: the model picks); engines
    are kept per (vocabulary, form, mode), so their allowed-set caches serve every later request."""
    vocab = _vocabulary(tokenizer_or_vocab, logits_size)
    key = (vocab.digest, poem_type, canonical_cipai(cipai) if cipai else None, mode, allow_unfit)
    engine = _ENGINES.get(key)
    if engine is None:
        table = token_table(vocab, mode)
        program = answer_program(form_families(table, poem_type, cipai), allow_unfit)
        engine = _ENGINES[key] = ConstraintEngine(table, program)
    return engine


_ENGINES: dict[tuple, ConstraintEngine] = {}


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
