"""Token accounting: deterministic text and image token counts, usageMetadata with implicit-cache hits."""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from typing import Any

ImageSize = tuple[int, int] | None


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or 0x20000 <= code <= 0x2FFFF


def count_text_tokens(text: str) -> int:
    """Deterministic, plausible token count: one per CJK character, one per four other characters."""
    if not text:
        return 0
    cjk = sum(1 for ch in text if _is_cjk(ch))
    return cjk + math.ceil((len(text) - cjk) / 4)


def count_image_tokens(size: ImageSize) -> int:
    """Gemini 2.x rule: 258 tokens when both sides are <= 384 px, else 258 per 768×768 tile."""
    if size is None:
        return 258
    width, height = size
    if width <= 384 and height <= 384:
        return 258
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def prompt_details(system_text: str, user_text: str, sizes: Sequence[ImageSize]) -> tuple[int, list[dict[str, Any]]]:
    """(prompt token count, promptTokensDetails by modality)."""
    text_tokens = count_text_tokens(system_text) + count_text_tokens(user_text)
    image_tokens = sum(count_image_tokens(size) for size in sizes)
    details = [{"modality": "TEXT", "tokenCount": text_tokens}]
    if image_tokens:
        details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    return text_tokens + image_tokens, details


class UsageMeter:
    """Builds usageMetadata; a system instruction seen before is reported as implicitly cached."""

    def __init__(self, implicit_cache_min_tokens: int = 0) -> None:
        self.implicit_cache_min_tokens = int(implicit_cache_min_tokens)
        self._seen_prefixes: set[str] = set()
        self._lock = threading.Lock()

    def _cached_tokens(self, system_text: str) -> int:
        """Tokens of the system instruction when it was sent before and is long enough to be cached."""
        if not system_text:
            return 0
        prefix = hashlib.sha256(system_text.encode("utf-8")).hexdigest()
        with self._lock:
            seen = prefix in self._seen_prefixes
            self._seen_prefixes.add(prefix)
        tokens = count_text_tokens(system_text)
        return tokens if seen and tokens >= self.implicit_cache_min_tokens else 0

    def usage(self, system_text: str, user_text: str, sizes: Sequence[ImageSize], output: str, thoughts: int) -> dict[str, Any]:
        """usageMetadata of one answer whose visible text is `output` after `thoughts` thinking tokens."""
        prompt, details = prompt_details(system_text, user_text, sizes)
        cached = self._cached_tokens(system_text)
        candidates = count_text_tokens(output)
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if candidates:
            usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = prompt + candidates + thoughts
        usage["promptTokensDetails"] = details
        if cached:
            usage["cachedContentTokenCount"] = cached
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage
