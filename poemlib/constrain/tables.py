"""Per-token character classes, computed once per (vocabulary, rhyme mode): tones of pure-汉字 tokens, the rhyme
groups of their last character, JSON-safe text tokens, and a bytes → id index for spelling literals."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from poemlib.constrain.vocab import Vocabulary
from poemlib.meter.readings import reading, to_simplified

MAX_HAN = 8  # longest pure-汉字 token used inside a line (longer ones are never needed and rare)
PAD_CODE = 4  # tone code of the padding past a token's last character; never allowed by a requirement
MAX_LITERAL_TOKEN_BYTES = 32


def is_han(ch: str) -> bool:
    """True for a CJK ideograph (unified, extension A, compatibility, extensions B+)."""
    code = ord(ch)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


def _json_text_safe(text: str) -> bool:
    """True when the text can sit inside a JSON string unescaped (no quote, backslash or control character)."""
    return all(ch not in '"\\' and ord(ch) >= 0x20 and ch != "\x7f" for ch in text)


@dataclass
class TokenTable:
    """Numpy/torch views of the vocabulary that the constraint masks are built from."""

    vocab: Vocabulary
    mode: str
    han_len: np.ndarray  # (V,) number of characters of a pure-汉字 token, 0 otherwise
    han_codes: np.ndarray  # (V, MAX_HAN) tone code (0 unknown, 1 平, 2 仄, 3 either, 4 pad) per character
    last_char: list[str | None]  # simplified last character of pure-汉字 tokens (重韵 key)
    group_masks: dict[str, torch.Tensor]  # rhyme group → tokens whose last character belongs to it
    text_mask: torch.Tensor  # tokens that may appear inside a free JSON string
    start_mask: torch.Tensor  # text tokens that may open a string (no leading whitespace: the schema strips it)
    end_mask: torch.Tensor  # text tokens that may end a string (no trailing whitespace)
    han_mask: torch.Tensor  # pure-汉字 tokens (titles)
    byte_index: dict[bytes, int]  # token bytes → id (first id when several tokens share bytes)
    last_groups: dict[int, frozenset[str]] = field(default_factory=dict)  # pure-汉字 token → rhyme groups of its last char
    ids_by_last: dict[str, np.ndarray] = field(default_factory=dict)  # simplified last char → token ids
    single_by_group: dict[str, frozenset[str]] = field(default_factory=dict)  # group → simplified 1-char tokens in it

    @property
    def size(self) -> int:
        """Width of the logits rows the masks apply to."""
        return self.vocab.logits_size

    def single_char_exists(self, requirement: int) -> bool:
        """True when some one-character token satisfies a tone requirement (bit set over tone codes)."""
        singles = self.han_codes[self.han_len == 1, 0]
        return bool(np.any((requirement >> singles.astype(np.int64)) & 1))


def _dense(ids: list[int] | np.ndarray, size: int) -> torch.Tensor:
    """A boolean mask of `size` with the given ids set."""
    mask = torch.zeros(size, dtype=torch.bool)
    if len(ids):
        mask[torch.as_tensor(np.asarray(ids, dtype=np.int64))] = True
    return mask


def _classify(vocab: Vocabulary, mode: str) -> dict:
    """One pass over the vocabulary: per-token strings sorted into the classes the masks need."""
    n = len(vocab.token_bytes)
    han_len = np.zeros(vocab.logits_size, dtype=np.int8)
    han_codes = np.full((vocab.logits_size, MAX_HAN), PAD_CODE, dtype=np.int8)
    last_char: list[str | None] = [None] * vocab.logits_size
    groups: dict[str, list[int]] = {}
    text_ids, start_ids, end_ids, han_ids = [], [], [], []
    byte_index: dict[bytes, int] = {}
    last_groups: dict[int, frozenset[str]] = {}
    for token_id, raw in enumerate(vocab.token_bytes):
        if raw is None:
            continue
        if len(raw) <= MAX_LITERAL_TOKEN_BYTES:
            byte_index.setdefault(raw, token_id)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a fragment of a multi-byte character: only literals may use it (through byte_index)
        if text and _json_text_safe(text):
            text_ids.append(token_id)
            if not text[0].isspace():
                start_ids.append(token_id)
            if not text[-1].isspace():
                end_ids.append(token_id)
        if text and all(is_han(ch) for ch in text):
            han_ids.append(token_id)
            if len(text) <= MAX_HAN:
                rows = [reading(ch, mode) for ch in text]
                han_len[token_id] = len(text)
                han_codes[token_id, : len(text)] = [rd.tone for rd in rows]
                last_char[token_id] = to_simplified(text[-1])
                last_groups[token_id] = rows[-1].groups
                for group in rows[-1].groups:
                    groups.setdefault(group, []).append(token_id)
    return {"n": n, "han_len": han_len, "han_codes": han_codes, "last_char": last_char, "groups": groups,
            "text_ids": text_ids, "start_ids": start_ids, "end_ids": end_ids, "han_ids": han_ids, "byte_index": byte_index, "last_groups": last_groups}


def _build_table(vocab: Vocabulary, mode: str) -> TokenTable:
    """Token classes of one vocabulary in one rhyme mode."""
    parts = _classify(vocab, mode)
    size = vocab.logits_size
    last_char = parts["last_char"]
    by_last: dict[str, list[int]] = {}
    for token_id, ch in enumerate(last_char):
        if ch is not None:
            by_last.setdefault(ch, []).append(token_id)
    singles: dict[str, set[str]] = {}
    for group, ids in parts["groups"].items():
        singles[group] = {last_char[i] for i in ids if parts["han_len"][i] == 1}
    return TokenTable(
        vocab=vocab,
        mode=mode,
        han_len=parts["han_len"],
        han_codes=parts["han_codes"],
        last_char=last_char,
        group_masks={g: _dense(ids, size) for g, ids in parts["groups"].items()},
        text_mask=_dense(parts["text_ids"], size),
        start_mask=_dense(parts["start_ids"], size),
        end_mask=_dense(parts["end_ids"], size),
        han_mask=_dense(parts["han_ids"], size),
        byte_index=parts["byte_index"],
        last_groups=parts["last_groups"],
        ids_by_last={ch: np.asarray(ids, dtype=np.int64) for ch, ids in by_last.items()},
        single_by_group={g: frozenset(chars) for g, chars in singles.items()},
    )


class _Keyed:
    """Wraps a Vocabulary so lru_cache keys on its digest, not on hashing 151k byte strings."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def __hash__(self) -> int:
        return hash(self.vocab.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and other.vocab.digest == self.vocab.digest


def token_table(vocab: Vocabulary, mode: str = "pingshui") -> TokenTable:
    """The (cached in memory, keyed by the vocabulary hash) token classes of a vocabulary."""
    return _table_for(_Keyed(vocab), mode)


@lru_cache(maxsize=4)
def _table_for(keyed: _Keyed, mode: str) -> TokenTable:
    """Cache entry point keyed by digest."""
    return _build_table(keyed.vocab, mode)
