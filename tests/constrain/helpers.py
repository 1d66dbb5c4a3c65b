"""Drive a constraint engine with random logits, and check a finished answer with the project's own parsers."""

from __future__ import annotations

import torch

from poemlib.constrain import ConstraintEngine
from poemlib.meter import check
from poemlib.schema import Annotation, parse_annotation_text


def allowed_mask(engine: ConstraintEngine, state, remaining: int) -> torch.Tensor:
    """The boolean mask of tokens the engine allows in a state."""
    allowed = engine.allowed(state, remaining)
    mask = torch.zeros(engine.table.size, dtype=torch.bool)
    if allowed.unconstrained:
        return ~mask
    if allowed.ids is not None:
        mask[allowed.ids] = True
    if allowed.banned is not None:
        mask.fill_(True)
        mask[allowed.banned] = False
    return mask


def drive(engine: ConstraintEngine, budget: int, generator: torch.Generator, *, greedy: bool, bias: torch.Tensor | None = None) -> list[int]:
    """Generate one answer under the constraint from random logits; asserts a token is always allowed."""
    return drive_from(engine, engine.start(), budget, generator, greedy=greedy, bias=bias)


def drive_from(engine: ConstraintEngine, state, budget: int, generator: torch.Generator | None = None, *, greedy: bool = False, bias: torch.Tensor | None = None) -> list[int]:
    """Continue an answer from a state with random logits until it finishes; the ids written."""
    generator = generator or torch.Generator().manual_seed(0)
    out: list[int] = []
    while not state.finished:
        remaining = budget - len(out)
        assert remaining > 0, f"budget {budget} exhausted before the answer finished"
        mask = allowed_mask(engine, state, remaining)
        assert bool(mask.any()), f"every token masked after {len(out)} tokens"
        # random logits over the vocabulary, masked: only the allowed entries matter, so only they are drawn
        candidates = mask.nonzero().squeeze(1)
        logits = torch.randn(len(candidates), generator=generator) * 3
        if bias is not None:
            logits += bias[candidates]
        if greedy:
            token = int(candidates[torch.argmax(logits)])
        else:
            token = int(candidates[torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)])
        out.append(token)
        state = engine.advance(state, token)
    return out


def answer_text(engine: ConstraintEngine, ids: list[int]) -> str:
    """The decoded answer without its stop token."""
    stops = set(engine.table.vocab.stop_ids)
    raw = b"".join(engine.table.vocab.token_bytes[i] or b"" for i in ids if i not in stops)
    return raw.decode("utf-8")


def assert_passes(text: str, poem_type: str | None) -> Annotation:
    """The answer parses as an Annotation and, when it is a poem, passes form, 平仄 and rhyme."""
    annotation = parse_annotation_text(text)
    if not annotation.create_condition:
        return annotation
    if poem_type is not None:
        assert annotation.poem_type == poem_type
    report = check(annotation.poem_type, annotation.poem_content, annotation.poem_title)
    assert report.form_ok and report.tone_ok and report.rhyme_ok, (text, [v.short() for v in report.violations])
    return annotation
