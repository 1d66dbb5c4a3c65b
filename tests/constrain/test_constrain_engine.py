"""Property tests: random logits over thousands of steps never meet a dead end and always end in a passing poem."""

from __future__ import annotations

import json

import pytest
import torch

from poemlib.constrain import Vocabulary, build_engine, build_logits_processor
from poemlib.meter import check
from poemlib.schema import PoemRequest, annotation_to_target
from tests.constrain.helpers import (
    allowed_mask,
    answer_text,
    assert_passes,
    drive,
    drive_from,
)

FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")


@pytest.mark.parametrize("poem_type", FORMS)
def test_random_logits_always_finish_a_passing_poem(qwen_vocab: Vocabulary, poem_type: str) -> None:
    engine = build_engine(qwen_vocab, poem_type, allow_unfit=False)
    generator = torch.Generator().manual_seed(len(poem_type) * 7 + FORMS.index(poem_type))
    worst = engine.program.worst[0]
    steps, rhymes = 0, set()
    for trial in range(8):
        # tight budgets force the free strings to close early; loose ones let them run
        budget = worst + [0, 3, 40, 200][trial % 4]
        ids = drive(engine, budget, generator, greedy=trial % 2 == 0)
        steps += len(ids)
        text = answer_text(engine, ids)
        annotation = assert_passes(text, poem_type)
        assert json.dumps(json.loads(text), ensure_ascii=False) == text  # json.dumps layout, as in training targets
        assert list(json.loads(text)) == ["poem_type", "poem_title", "poem_content", "poem_explanation"]
        report = check(poem_type, annotation.poem_content, annotation.poem_title)
        assert len(set(report.rhyme_chars)) == len(report.rhyme_chars)
        rhymes.add(report.template)
    assert steps >= 1000
    assert len(rhymes) >= 2  # the model's first characters choose among the form's templates


def test_model_picks_the_type_or_unfit(qwen_vocab: Vocabulary) -> None:
    engine = build_engine(qwen_vocab, None)
    generator = torch.Generator().manual_seed(11)
    seen = set()
    for trial in range(10):
        ids = drive(engine, engine.program.worst[0] + 12, generator, greedy=trial % 3 == 0)
        annotation = assert_passes(answer_text(engine, ids), None)
        seen.add(annotation.poem_type if annotation.create_condition else "unfit")
    assert "unfit" in seen and len(seen) >= 3


def test_unfit_answer_matches_the_training_layout(qwen_vocab: Vocabulary) -> None:
    engine = build_engine(qwen_vocab, "五言绝句")
    state, ids = engine.start(), []
    head = b'{"create_condition": false'
    while len(b"".join(qwen_vocab.token_bytes[i] for i in ids)) < len(head):  # steer the head to the unfit branch
        written = b"".join(qwen_vocab.token_bytes[i] for i in ids)
        token = engine.table.byte_index[head[len(written) : len(written) + 1]]
        assert bool(allowed_mask(engine, state, 300 - len(ids))[token])
        ids.append(token)
        state = engine.advance(state, token)
    ids += drive_from(engine, state, 300 - len(ids))
    text = answer_text(engine, ids)
    annotation = assert_passes(text, None)
    assert not annotation.create_condition
    assert annotation_to_target(annotation) == text


def test_multi_character_tokens_fit_when_every_character_does(qwen_vocab: Vocabulary) -> None:
    engine = build_engine(qwen_vocab, "七言绝句", allow_unfit=False)
    state = engine.start()
    head = '{"poem_type": "七言绝句", "poem_title": "'.encode()
    state = engine.advance(state, engine.table.byte_index[head[:2]])
    while state.program is engine.program:
        rest = head[len(state.written):]
        token = next(engine.table.byte_index[rest[:k]] for k in range(len(rest), 0, -1) if rest[:k] in engine.table.byte_index)
        state = engine.advance(state, token)
    state = engine.advance(state, engine.table.byte_index["月".encode()])  # title
    for byte in b'", "poem_content": "':  # one byte per token: a literal may be spelled any way
        state = engine.advance(state, engine.table.byte_index[bytes([byte])])
    mask = allowed_mask(engine, state, 200)
    lengths = engine.table.han_len[mask.numpy()]
    assert (lengths >= 2).sum() > 1000  # many multi-character tokens open a line
    assert not mask[engine.table.byte_index["，".encode()]]  # no punctuation before the line is full


def test_budget_that_cannot_hold_the_form_is_refused(qwen_vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="max_new_tokens=50 is too small"):
        build_logits_processor(qwen_vocab, PoemRequest(poem_type="七言律诗"), max_new_tokens=50)


def test_vocabulary_that_cannot_spell_the_json_is_refused() -> None:
    han_only = Vocabulary(tuple(ch.encode() for ch in "春眠不觉晓处闻啼鸟"), stop_ids=(9,), logits_size=10)
    with pytest.raises(ValueError, match="cannot spell"):
        build_engine(han_only, "五言绝句")
