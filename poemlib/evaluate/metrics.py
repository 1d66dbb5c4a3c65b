"""Character-level text metrics of poems: BLEU-4, ROUGE-L, distinct-n, repetition.

Character tokens: every character of the poem that is not whitespace, punctuation or a symbol (Unicode categories
Z*, P*, S*, C*), so line breaks and ，。 do not count.
BLEU-4: sentence level, clipped n-gram precisions p1..p4 with uniform weights, brevity penalty exp(1 - r/c) when the
candidate is shorter than the reference; smoothing: add-one on the 2- to 4-gram precisions, p_n = (m_n + 1)/(l_n + 1)
(Lin & Och 2004, "smoothed BLEU"); p1 is not smoothed, so no shared character means BLEU 0.
ROUGE-L: F1 (β = 1) of LCS precision LCS/|candidate| and recall LCS/|reference|.
distinct-n: unique n-grams / all n-grams over a backend's poems (n-grams do not cross poems).
rep2: 1 - unique/all character bigrams within one poem. repeated_lines: share of lines equal to an earlier line.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence


def poem_chars(text: str | None) -> list[str]:
    """Character tokens of a poem: whitespace, punctuation, symbols and control characters dropped."""
    if not text:
        return []
    return [ch for ch in text if unicodedata.category(ch)[0] not in "ZPSC"]


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counter of the n-grams (tuples) of a token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _tokens(text: str | Sequence[str]) -> list[str]:
    """A poem's character tokens, or an already tokenised sequence as is."""
    return poem_chars(text) if isinstance(text, str) else list(text)


def bleu4(candidate: str | Sequence[str], reference: str | Sequence[str]) -> float:
    """Sentence-level character BLEU-4 with add-one smoothing on 2-4-gram precisions (Lin & Och 2004)."""
    cand, ref = _tokens(candidate), _tokens(reference)
    if not cand or not ref:
        return 0.0
    log_sum = 0.0
    for n in range(1, 5):
        c_ngrams, r_ngrams = ngrams(cand, n), ngrams(ref, n)
        matches = sum(min(count, r_ngrams[g]) for g, count in c_ngrams.items())
        total = sum(c_ngrams.values())
        if n == 1:
            if matches == 0:
                return 0.0
            p = matches / total
        else:
            p = (matches + 1) / (total + 1)
        log_sum += math.log(p) / 4
    c, r = len(cand), len(ref)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_sum)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(|a|·|b|) time, O(|b|) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str | Sequence[str], reference: str | Sequence[str]) -> float:
    """Character ROUGE-L F1: harmonic mean of LCS/|candidate| and LCS/|reference|."""
    cand, ref = _tokens(candidate), _tokens(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Corpus distinct-n: unique character n-grams / all n-grams over the texts (NaN when there are none)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = ngrams(poem_chars(text), n)
        seen.update(grams)
        total += sum(grams.values())
    return len(seen) / total if total else float("nan")


def repetition_rate(text: str, n: int = 2) -> float:
    """Within one text: 1 - unique/all character n-grams (0 = nothing repeats; NaN when it has no n-gram)."""
    grams = ngrams(poem_chars(text), n)
    total = sum(grams.values())
    return 1 - len(grams) / total if total else float("nan")


def poem_lines(text: str | None) -> list[str]:
    """Non-empty lines of a poem, each reduced to its character tokens."""
    if not text:
        return []
    return ["".join(poem_chars(line)) for line in text.split("\n") if poem_chars(line)]


def repeated_line_rate(text: str) -> float:
    """Share of lines that repeat an earlier line (NaN for no lines)."""
    lines = poem_lines(text)
    if not lines:
        return float("nan")
    seen: set[str] = set()
    repeats = 0
    for line in lines:
        repeats += line in seen
        seen.add(line)
    return repeats / len(lines)
