"""Per-token character classes, computed once per (vocabulary, rhyme mode): tones of pure-汉字 tokens, the rhyme keys
of their last character (平水韵 平声 groups for 近体, 词林正韵 部 by tone for 词), JSON-safe text tokens, a bytes → id
index for spelling literals, and (cached per requirement) the index sets of tokens fitting a run of tone
requirements. Sets are sorted int64 id arrays: a step scatters a few thousand ids instead of combining 151k masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from poemlib.constrain.vocab import Vocabulary
from poemlib.meter.ci_rhyme import bu_name
from poemlib.meter.cilin import cilin_parts
from poemlib.meter.readings import EITHER, PING, ZE, reading, to_simplified

MAX_HAN = 8  # longest pure-汉字 token used inside a line (longer ones are never needed and rare)
PAD_CODE = 4  # tone code of the padding past a token's last character; never allowed by a requirement
MAX_LITERAL_TOKEN_BYTES = 32
FIT_CACHE_ENTRIES = 1024  # fit sets kept per table (each up to ~15k ids)
CI_SUFFIX = {PING: "平", ZE: "仄"}  # a 词 rhyme key is a 词林正韵 部 name plus the tone it is read in there


def is_han(ch: str) -> bool:
    """True for a CJK ideograph (unified, extension A, compatibility, extensions B+)."""
    code = ord(ch)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


def _json_text_safe(text: str) -> bool:
    """True when the text can sit inside a JSON string unescaped (no quote, backslash or control character)."""
    return all(ch not in '"\\' and ord(ch) >= 0x20 and ch != "\x7f" for ch in text)


def ci_keys(ch: str) -> frozenset[str]:
    """词 rhyme keys of a character: each 词林正韵 部 it is in, alone and with the tone it has there (第七部平)."""
    keys = set()
    for bu, tone in cilin_parts(ch):
        keys |= {bu_name(bu), bu_name(bu) + CI_SUFFIX[tone]}
    return frozenset(keys)


def _tone_fits(key: str, code: int) -> bool:
    """Whether a character of tone code `code` can stand at a rhyme slot of this key (第七部平 needs a 平 reading)."""
    if key.endswith("平"):
        return code in (PING, EITHER)
    if key.endswith("仄"):
        return code in (ZE, EITHER)
    return code in (PING, ZE, EITHER)


def _ids(values: list[int] | np.ndarray) -> np.ndarray:
    """A sorted, unique int64 id array."""
    return np.unique(np.asarray(values, dtype=np.int64))


@dataclass(eq=False)
class TokenTable:
    """Index sets of the vocabulary that the constraint's allowed tokens are built from."""

    vocab: Vocabulary
    mode: str
    han_len: np.ndarray  # (V,) number of characters of a pure-汉字 token (≤ MAX_HAN), 0 otherwise
    han_codes: np.ndarray  # (V, MAX_HAN) tone code (0 unknown, 1 平, 2 仄, 3 either, 4 pad) per character
    last_char: list[str | None]  # simplified last character of pure-汉字 tokens (重韵 key)
    rhyme_keys: dict[int, frozenset[str]]  # pure-汉字 token → rhyme keys of its last character
    key_ids: dict[str, np.ndarray]  # rhyme key → tokens whose last character has it
    ping_groups: frozenset[str]  # the 平水韵 平声 groups (近体 rhyme keys)
    single_by_key: dict[str, frozenset[str]]  # rhyme key → simplified 1-char tokens that can rhyme there
    single_codes: frozenset[int]  # tone codes some one-character token has
    title_ids: torch.Tensor  # pure-汉字 tokens (titles)
    text_banned: torch.Tensor  # tokens that may not appear inside a free JSON string
    start_banned: torch.Tensor  # ... nor open one (leading whitespace: the schema strips it)
    end_banned: torch.Tensor  # ... nor end one (trailing whitespace)
    alone_banned: torch.Tensor  # ... nor open and end one at once
    byte_index: dict[bytes, int]  # token bytes → id (first id when several tokens share bytes)
    ids_by_last: dict[str, np.ndarray] = field(default_factory=dict)  # simplified last char → token ids
    _fit_cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _rhyme_cache: dict[tuple, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Width of the logits rows the allowed sets apply to."""
        return self.vocab.logits_size

    def single_char_exists(self, requirement: int) -> bool:
        """True when some one-character token satisfies a tone requirement (bit set over tone codes)."""
        return any(requirement >> code & 1 for code in self.single_codes)

    @property
    def _han_rows(self) -> np.ndarray:
        """Ids of the pure-汉字 tokens a line may use (computed once)."""
        rows = self.__dict__.get("_rows")
        if rows is None:
            rows = self.__dict__["_rows"] = np.flatnonzero(self.han_len > 0)
        return rows

    def fit(self, reqs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Pure-汉字 tokens fitting the requirements from their start: (ending before the last, ending exactly on it)."""
        found = self._fit_cache.get(reqs)
        if found is None:
            rows = self._han_rows
            lengths = self.han_len[rows]
            codes = self.han_codes[rows]
            fits = (lengths >= 1) & (lengths <= len(reqs))
            for k, req in enumerate(reqs[: codes.shape[1]]):
                allowed = np.array([bool(req >> c & 1) for c in range(PAD_CODE + 1)])
                fits &= allowed[codes[:, k]] | (lengths <= k)
            short = rows[fits & (lengths < len(reqs))]
            exact = rows[fits & (lengths == len(reqs))]
            if len(self._fit_cache) >= FIT_CACHE_ENTRIES:  # 词 of every 词牌 meet thousands of distinct runs
                self._fit_cache.clear()
                self._rhyme_cache.clear()
            found = self._fit_cache[reqs] = (short, exact)
        return found

    def rhyming(self, exact: np.ndarray, reqs: tuple[int, ...], keys: frozenset[str]) -> np.ndarray:
        """The tokens of `exact` (fitting `reqs`) whose last character has one of the rhyme keys."""
        cache_key = (reqs, keys)
        found = self._rhyme_cache.get(cache_key)
        if found is None:
            pool = np.concatenate([self.key_ids.get(k, np.empty(0, np.int64)) for k in keys] or [np.empty(0, np.int64)])
            if len(self._rhyme_cache) >= FIT_CACHE_ENTRIES:
                self._rhyme_cache.clear()
            found = self._rhyme_cache[cache_key] = exact[np.isin(exact, pool)]
        return found

    def used_ids(self, chars: frozenset[str]) -> np.ndarray:
        """Tokens whose last character is one of `chars` (rhyme characters already used)."""
        return np.concatenate([self.ids_by_last.get(ch, np.empty(0, np.int64)) for ch in chars])


def _complement(allowed: list[int], size: int) -> torch.Tensor:
    """The ids in [0, size) not in `allowed`, as a tensor."""
    mask = np.ones(size, dtype=bool)
    mask[np.asarray(allowed, dtype=np.int64)] = False
    return torch.from_numpy(np.flatnonzero(mask))


def _classify(vocab: Vocabulary, mode: str) -> dict:
    """One pass over the vocabulary: per-token strings sorted into the classes the allowed sets need."""
    size = vocab.logits_size
    han_len = np.zeros(size, dtype=np.int8)
    han_codes = np.full((size, MAX_HAN), PAD_CODE, dtype=np.int8)
    last_char: list[str | None] = [None] * size
    keys_of: dict[int, frozenset[str]] = {}
    text_ids, start_ids, end_ids, han_ids = [], [], [], []
    byte_index: dict[bytes, int] = {}
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
                keys_of[token_id] = rows[-1].groups | (ci_keys(text[-1]) if mode == "pingshui" else frozenset())
    return {"han_len": han_len, "han_codes": han_codes, "last_char": last_char, "keys_of": keys_of, "text_ids": text_ids,
            "start_ids": start_ids, "end_ids": end_ids, "han_ids": han_ids, "byte_index": byte_index}


def _build_table(vocab: Vocabulary, mode: str) -> TokenTable:
    """Token classes of one vocabulary in one rhyme mode."""
    parts = _classify(vocab, mode)
    size = vocab.logits_size
    last_char, han_len, han_codes = parts["last_char"], parts["han_len"], parts["han_codes"]
    by_last: dict[str, list[int]] = {}
    by_key: dict[str, list[int]] = {}
    singles: dict[str, set[str]] = {}
    ping_groups: set[str] = set()
    for token_id, keys in parts["keys_of"].items():
        by_last.setdefault(last_char[token_id], []).append(token_id)
        ping_groups |= {k for k in keys if not k.startswith("第")}
        for key in keys:
            by_key.setdefault(key, []).append(token_id)
            if han_len[token_id] == 1 and _tone_fits(key, int(han_codes[token_id, 0])):
                singles.setdefault(key, set()).add(last_char[token_id])
    text, start, end = set(parts["text_ids"]), set(parts["start_ids"]), set(parts["end_ids"])
    return TokenTable(
        vocab=vocab,
        mode=mode,
        han_len=han_len,
        han_codes=han_codes,
        last_char=last_char,
        rhyme_keys=parts["keys_of"],
        key_ids={k: _ids(ids) for k, ids in by_key.items()},
        ping_groups=frozenset(ping_groups),
        single_by_key={k: frozenset(chars) for k, chars in singles.items()},
        single_codes=frozenset(int(c) for c in np.unique(han_codes[han_len == 1, 0])),
        title_ids=torch.from_numpy(_ids(parts["han_ids"])),
        text_banned=_complement(sorted(text), size),
        start_banned=_complement(sorted(start), size),
        end_banned=_complement(sorted(end), size),
        alone_banned=_complement(sorted(start & end), size),
        byte_index=parts["byte_index"],
        ids_by_last={ch: _ids(ids) for ch, ids in by_last.items()},
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
