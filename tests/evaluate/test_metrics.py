"""Character-level metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from poemlib import evaluate as ev


def test_poem_chars_drop_whitespace_and_punctuation() -> None:
    assert ev.poem_chars("白日依山尽，\n黄河入海流。") == list("白日依山尽黄河入海流")
    assert ev.poem_chars("「春」 风！") == ["春", "风"]
    assert ev.poem_chars(None) == []


def test_bleu4_by_hand() -> None:
    assert ev.bleu4("白日依山尽", "白日依山尽") == pytest.approx(1.0)
    # every n-gram matches; c=4 < r=5: BP = exp(1 - 5/4)
    assert ev.bleu4("白日依山", "白日依山尽") == pytest.approx(math.exp(-0.25))
    # p1 = 5/5; bigrams 白日 山尽 match of 4: (2+1)/(4+1); trigrams 0 of 3: 1/4; 4-grams 0 of 2: 1/3; BP = 1
    assert ev.bleu4("白日依山尽", "白日山尽依") == pytest.approx((1 * 0.6 * 0.25 * (1 / 3)) ** 0.25)
    # clipping: 春 appears 4 times in the candidate, once in the reference → p1 = 1/4;
    # bigrams 春春 ×3 unmatched: (0+1)/(3+1); trigrams (0+1)/(2+1); 4-gram (0+1)/(1+1); c = r = 4
    assert ev.bleu4("春春春春", "春花秋月") == pytest.approx((0.25 * 0.25 * (1 / 3) * 0.5) ** 0.25)
    assert ev.bleu4("风雨", "白日") == 0.0
    assert ev.bleu4("", "白日") == 0.0
    # punctuation and line breaks do not count
    assert ev.bleu4("白日依山尽，\n黄河入海流。", "白日依山尽黄河入海流") == pytest.approx(1.0)
    # tokens may be given already split
    assert ev.bleu4(list("白日依山"), list("白日依山尽")) == pytest.approx(math.exp(-0.25))


def test_lcs_and_rouge_l_by_hand() -> None:
    assert ev.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert ev.lcs_length([], list("AB")) == 0
    # LCS 白日山尽 = 4: P = 4/5, R = 4/4, F = 2·0.8·1/1.8
    assert ev.rouge_l("白日依山尽", "白日山尽") == pytest.approx(2 * 0.8 / 1.8)
    assert ev.rouge_l("白日依山尽", "白日山尽依") == pytest.approx(0.8)
    assert ev.rouge_l("白日", "白日") == pytest.approx(1.0)
    assert ev.rouge_l("风雨", "白日") == 0.0


def test_distinct_repetition_and_lines_by_hand() -> None:
    # unigrams 白日白日 + 月: 3 unique of 5; bigrams 白日 日白 白日: 2 unique of 3 (none cross poems)
    assert ev.distinct_n(["白日白日", "月"], 1) == pytest.approx(3 / 5)
    assert ev.distinct_n(["白日白日", "月"], 2) == pytest.approx(2 / 3)
    assert math.isnan(ev.distinct_n([], 2))
    assert ev.repetition_rate("白日白日", 2) == pytest.approx(1 / 3)
    assert ev.repetition_rate("春风春风春风", 2) == pytest.approx(1 - 2 / 5)
    assert ev.repetition_rate("床前明月光", 2) == 0.0
    assert math.isnan(ev.repetition_rate("月", 2))
    assert ev.repeated_line_rate("春风，\n春风。\n秋月") == pytest.approx(1 / 3)
    assert ev.repeated_line_rate("一\n二") == 0.0
    assert ev.poem_lines("春风，\n\n秋月。") == ["春风", "秋月"]
    assert ev.ngrams(list("春风春"), 2) == {("春", "风"): 1, ("风", "春"): 1}
