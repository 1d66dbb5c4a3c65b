"""Traditional-script detection for the `traditional_chars` flag (the content keeps its characters)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _traditional_only_chars() -> frozenset[str]:
    """Characters OpenCC maps only to other (simplified) characters."""
    import opencc

    table = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    chars = set()
    for line in table.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and len(parts[0]) == 1 and parts[0] not in parts[1].split():
            chars.add(parts[0])
    return frozenset(chars)


def has_traditional(text: str) -> bool:
    """True when the text contains a character that only exists in traditional writing."""
    return not _traditional_only_chars().isdisjoint(text)
