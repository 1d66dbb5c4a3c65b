"""Poem type names: the one alias table, a strict normaliser (the engine's) and a lenient inference (clean's).

    normalise_poem_type(value: str) -> str                      # 七律 → 七言律诗; ValueError for unknown names
    infer_poem_type(value, *, title=None, content=None) -> tuple[str | None, str | None]
        # (type or None, repair note or None): traditional script, aliases, 词牌 given as type, 绝句/律诗 by shape
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from poemlib.forms import POEM_TYPES

# Every abbreviation and loose name in use for a schema poem type.
TYPE_ALIASES: dict[str, str] = {
    "五绝": "五言绝句",
    "五言绝": "五言绝句",
    "七绝": "七言绝句",
    "七言绝": "七言绝句",
    "五律": "五言律诗",
    "五言律": "五言律诗",
    "七律": "七言律诗",
    "七言律": "七言律诗",
    "宋词": "词",
    "长短句": "词",
    "曲子词": "词",
    "词牌": "词",
}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_JU_SPLIT = re.compile(r"[，。！？；、,.!?;:：\n\s]+")
_PAREN = re.compile(r"[（(【\[].*?[）)】\]]")
# Names that say 近体 but not which one: the poem's shape (characters per 句, number of 句) decides.
_SHAPE_NAMES = ("绝句", "律诗", "五言", "七言", "五言诗", "七言诗", "近体诗")


def normalise_poem_type(poem_type: str) -> str:
    """The schema's poem type for a name or common abbreviation (七律 → 七言律诗); ValueError naming unknown values."""
    value = (poem_type or "").strip()
    value = TYPE_ALIASES.get(value, value)
    if value not in POEM_TYPES:
        raise ValueError(f"unknown poem_type {poem_type!r}; expected one of {', '.join(POEM_TYPES)}")
    return value


@lru_cache(maxsize=1)
def _t2s_converter() -> Any:
    """OpenCC's phrase-aware traditional→simplified converter (built once)."""
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=4096)
def _simplified(text: str) -> str:
    """OpenCC t2s of a short string (type names and 词牌 only)."""
    return _t2s_converter().convert(text)


def _shape(content: str) -> tuple[set[int], int]:
    """Han characters per 句 (set) and number of 句 in a poem."""
    lengths = [n for j in _JU_SPLIT.split(content) if (n := len(_HAN.findall(j)))]
    return set(lengths), len(lengths)


def _by_shape(name: str, content: str) -> str | None:
    """五言/七言 绝句/律诗 read from the poem's lines when the name is compatible with that shape."""
    lengths, count = _shape(content)
    chars = {5: "五言", 7: "七言"}.get(next(iter(lengths))) if len(lengths) == 1 else None
    kind = {4: "绝句", 8: "律诗"}.get(count)
    if chars and kind and (name in ("绝句", "律诗") and name == kind or name.startswith(chars) or name == "近体诗"):
        return chars + kind
    return None


def infer_poem_type(value: Any, *, title: str | None = None, content: str | None = None) -> tuple[str | None, str | None]:
    """Map a legacy 体裁 to a schema poem type; returns (type or None, repair note or None)."""
    if value is None:
        return None, None
    raw = str(value)
    name = _PAREN.sub("", _simplified(raw)).strip().strip("《》〈〉\"'").replace(" ", "").replace("\u3000", "")
    if name in POEM_TYPES:
        return name, (None if name == raw else f"poem_type:{raw}->{name}")
    if name in TYPE_ALIASES:
        return TYPE_ALIASES[name], f"poem_type:{raw}->{TYPE_ALIASES[name]}"
    if name.startswith("词") or name.endswith("词"):
        return "词", f"poem_type:{raw}->词"
    if title:
        cipai = _simplified(title).split("·")[0].strip().strip("《》")
        if "·" in title and cipai and (name == cipai or name.split("·")[0] == cipai):
            return "词", "poem_type:词牌 given as type->词"
    if name in _SHAPE_NAMES and content:
        inferred = _by_shape(name, content)
        if inferred:
            return inferred, f"poem_type:{raw}->inferred from lines"
    return None, None
