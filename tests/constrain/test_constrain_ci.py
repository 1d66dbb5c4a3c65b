"""词 under the constraint: random logits over thousands of steps, for every common 词牌 (the ones a model may pick)
and a sample of the rest of the 谱, never meet a dead end, finish, and pass form, 平仄 and rhyme as the 体 the
constraint followed (the checker picks that same 体)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from poemlib.constrain import Vocabulary, build_engine, ci_family
from poemlib.instructions import common_cipai
from poemlib.meter import check
from poemlib.meter.cipai import load_cipai
from poemlib.schema import annotation_to_target
from tests.constrain.helpers import answer_text, assert_passes, drive


def _drive_ci(vocab: Vocabulary, names: list[str], seed: int) -> int:
    """One random-logit answer per 词牌 (budgets tight to loose, greedy and sampled); the steps taken."""
    generator = torch.Generator().manual_seed(seed)
    steps = 0
    for index, name in enumerate(names):
        engine = build_engine(vocab, "词", name, allow_unfit=False)
        ids = drive(engine, engine.program.worst[0] + (0, 3, 40)[index % 3], generator, greedy=index % 2 == 0)
        steps += len(ids)
        text = answer_text(engine, ids)
        annotation = assert_passes(text, "词")
        assert annotation_to_target(annotation) == text  # the training targets' layout, byte for byte
        assert annotation.poem_title.startswith(f"{name}·")
        report = check("词", annotation.poem_content, annotation.poem_title)
        assert report.template == ci_family(name).templates[0].name, (name, report.template)
    return steps


def test_every_common_cipai_finishes_a_passing_ci(qwen_vocab: Vocabulary) -> None:
    names = common_cipai()
    assert len(names) >= 50
    assert _drive_ci(qwen_vocab, names, seed=5) >= 5000


def test_a_sample_of_the_whole_cipu_finishes_passing(qwen_vocab: Vocabulary) -> None:
    rest = sorted(set(load_cipai()) - set(common_cipai()))
    names = random.Random(13).sample(rest, 24)
    assert _drive_ci(qwen_vocab, names, seed=6) >= 2000


def test_every_cipai_of_the_cipu_compiles() -> None:
    for name, cipai in load_cipai().items():
        family = ci_family(name)
        variant = cipai.variants[0]
        assert sum(len(line.tones) for line in family.shape.lines) == variant.chars
        assert sum(line.stanza_end for line in family.shape.lines) == variant.pian - 1
        assert len(family.rhyme_sets) == len(variant.rhymes)


def test_layout_of_a_constrained_ci(qwen_vocab: Vocabulary) -> None:
    family = ci_family("浣溪沙")
    assert [len(line.tones) for line in family.shape.lines] == [7] * 6
    assert [line.punct for line in family.shape.lines] == ["。", "。", "。", "，", "。", "。"]
    assert [line.stanza_end for line in family.shape.lines] == [False, False, True, False, False, False]
    assert {line.rhyme_suffix for line in family.shape.lines if line.rhyme is not None} == {"平"}
    mixed = ci_family("菩萨蛮")  # 换韵: four rhyme sets, 仄 平 仄 平
    assert [mixed.shape.lines[i].rhyme_suffix for i in (0, 2, 4, 6)] == ["仄", "平", "仄", "平"]
    assert len(mixed.rhyme_sets) == 4


def test_model_picks_a_common_cipai_or_a_regular_form(qwen_vocab: Vocabulary) -> None:
    engine = build_engine(qwen_vocab, None)
    heads = [text.decode() for text, _ in engine.program.segments[0].alternatives]
    assert sum('"词"' in head for head in heads) == len(common_cipai())
    generator = torch.Generator().manual_seed(21)
    bias = torch.zeros(engine.table.size)
    bias[engine.table.byte_index["词".encode()]] = 30.0  # steer random logits into the 词 branch
    seen = set()
    for trial in range(6):
        ids = drive(engine, engine.program.worst[0] + 10, generator, greedy=trial % 2 == 0, bias=bias)
        annotation = assert_passes(answer_text(engine, ids), None)
        if annotation.create_condition and annotation.poem_type == "词":
            seen.add(annotation.poem_title.split("·")[0])
    assert seen and seen <= set(common_cipai())


def test_unknown_cipai_names_the_closest(qwen_vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="closest known"):
        build_engine(qwen_vocab, "词", "如梦灵犀")


def test_alias_reaches_the_canonical_cipai(qwen_vocab: Vocabulary) -> None:
    engine = build_engine(qwen_vocab, "词", "金缕曲")
    head = engine.program.segments[0].alternatives[0][0].decode()
    assert json.loads(head + '"}')["poem_title"] == "贺新郎·"  # the title carries the canonical name
