"""The 词谱 (resources/cipu/cipu.json.gz, built by scripts/build_cipu.py): 词牌, their aliases and every 体.

Each 体 (`Variant`) carries its 平仄 pattern, its 句 structure as the 谱 punctuates it and its rhyme groups; the
名 index maps every name, alias and traditional form to the canonical 词牌.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import pairwise

from poemlib.config import RESOURCES_DIR
from poemlib.meter.readings import PING, ZE, to_simplified

CIPU_PATH = RESOURCES_DIR / "cipu" / "cipu.json.gz"

# Suffixes that make a different 词牌 from the one they extend (卜算子慢 is not 卜算子).
_DERIVED_SUFFIX = ("慢", "令", "近", "引", "犯")
_SEPARATORS = re.compile(r"[·・•．.\-—－:：|｜/／\s（()）,，、]+")
_BOOK_TITLE = re.compile(r"[《〈](.+?)[》〉]")
_PIECE = re.compile(r"(\d+)(\D)")
_PIAN_NAMES = {1: "单调", 2: "双调", 3: "三叠", 4: "四叠"}
_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """0 ≤ n < 1000 in Chinese numerals as 词谱 write lengths (四十四, 一百一十六, 一百零五)."""
    hundreds, rest = divmod(n, 100)
    tens, ones = divmod(rest, 10)
    out = f"{_DIGITS[hundreds]}百" if hundreds else ""
    if tens:
        out += ("" if tens == 1 and not hundreds else _DIGITS[tens]) + "十"
    elif hundreds and ones:
        out += "零"
    if ones or not out:
        out += _DIGITS[ones]
    return out


@dataclass(frozen=True, slots=True)
class Stanza:
    """One 片 of a 体: its 句 lengths as text (e.g. '7 7 7') and its number of characters."""

    text: str
    total: int


@dataclass(frozen=True)
class Variant:
    """One 体 of a 词牌: pattern (平/仄/中 per character), 句 pieces (length, mark) and rhyme groups."""

    name: str  # e.g. '正体（双调四十四字）'
    label: str  # 正体, 又一体3, 龙谱
    pattern: str
    pieces: tuple[tuple[int, str], ...]
    rhymes: tuple[tuple[int, ...], ...]  # positions per rhyme group; negative = 叶 in the other tone
    pian: int
    origin: str

    @cached_property
    def chars(self) -> int:
        """Number of characters."""
        return len(self.pattern)

    @cached_property
    def ends(self) -> dict[int, str]:
        """End offset of every piece → its mark (韵 叶 叠 end a rhyme unit, 句 a line, 读 a pause)."""
        out, pos = {}, 0
        for length, mark in self.pieces:
            pos += length
            out[pos] = mark
        return out

    @cached_property
    def line_ends(self) -> tuple[int, ...]:
        """End offsets of the 句 (every piece end except pauses), the last one included."""
        return tuple(pos for pos, mark in self.ends.items() if mark != "读")

    @cached_property
    def unit_ends(self) -> tuple[int, ...]:
        """End offsets of the rhyme units (where a 片 may end)."""
        return tuple(pos for pos, mark in self.ends.items() if mark in "韵叶叠")

    @cached_property
    def pian_breaks(self) -> tuple[int, ...]:
        """Where the 片 most likely end: the rhyme-unit end nearest each j/pian of the length."""
        total, out = self.chars, []
        for j in range(1, self.pian):
            target = total * j / self.pian
            out.append(min(self.unit_ends[:-1] or (total,), key=lambda e: (abs(e - target), -e)))
        return tuple(out)

    @cached_property
    def stanzas(self) -> tuple[tuple[Stanza, ...], ...]:
        """The 片 (one way of writing each), with the 句 lengths of each."""
        bounds = (0, *self.pian_breaks, self.chars)
        out = []
        for start, stop in pairwise(bounds):
            cuts = [e for e in self.line_ends if start < e <= stop]
            lengths = [b - a for a, b in zip([start, *cuts], cuts)]
            out.append((Stanza(" ".join(map(str, lengths)), stop - start),))
        return tuple(out)

    @cached_property
    def strict(self) -> tuple[tuple[int, str, int], ...]:
        """(position, 平 or 仄, the opposite tone's bit) for every position the 谱 does not leave open (中)."""
        opposite = {"平": ZE, "仄": PING}
        return tuple((pos, want, opposite[want]) for pos, want in enumerate(self.pattern) if want != "中")

    @cached_property
    def strict_faults(self) -> tuple[tuple[int, int, tuple[str, str, int, str]], ...]:
        """(position, the opposite tone's bit, the fault to report there) for every strict position, built once."""
        return tuple((pos, opposite, ("tone", "词谱平仄", pos, "should be " + want)) for pos, want, opposite in self.strict)

    @cached_property
    def rhyme_tone(self) -> dict[int, str]:
        """Rhyme position → the 谱's tone there (平, 仄 or 中)."""
        return {abs(p): self.pattern[abs(p)] for group in self.rhymes for p in group}


@dataclass(frozen=True, slots=True)
class Cipai:
    """A 词牌: canonical name, aliases (simplified and traditional), 单调/双调…, and its 体 (正体 first)."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    variants: tuple[Variant, ...]


def _variant(form: dict) -> Variant:
    """A 体 from its resource record."""
    pattern = form["pattern"]
    name = f"{form['label']}（{_PIAN_NAMES.get(form['pian'], '')}{chinese_number(len(pattern))}字）"
    pieces = tuple((int(n), mark) for n, mark in _PIECE.findall(form["pieces"]))
    rhymes = tuple(tuple(group) for group in form["rhymes"])
    return Variant(name, form["label"], pattern, pieces, rhymes, int(form["pian"]), form.get("origin", ""))


@lru_cache(maxsize=1)
def load_cipu() -> dict:
    """The raw resource (format version, source, counts, 词牌 records)."""
    try:
        with gzip.open(CIPU_PATH, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"{CIPU_PATH}: cannot read the 词谱 resource ({exc}); rebuild it with scripts/build_cipu.py") from exc


@lru_cache(maxsize=1)
def load_cipai() -> dict[str, Cipai]:
    """Every 词牌 keyed by canonical name (loaded once)."""
    table = {}
    for record in load_cipu()["cipai"]:
        variants = tuple(_variant(form) for form in record["forms"])
        table[record["name"]] = Cipai(record["name"], tuple(record["aliases"]), record["kind"], variants)
    return table


@lru_cache(maxsize=1)
def name_index() -> dict[str, str]:
    """Every name and alias → canonical 词牌 name (a canonical name wins over another 词牌's alias)."""
    index = {}
    for cipai in load_cipai().values():
        for alias in cipai.aliases:
            index.setdefault(alias, cipai.name)
    for cipai in load_cipai().values():
        index[cipai.name] = cipai.name
    return index


def cipai_names() -> list[str]:
    """Canonical names of the known 词牌, in the 谱's order."""
    return list(load_cipai())


def _title_parts(title: str) -> list[str]:
    """Candidate names in a title: 《》 contents first, then the pieces between separators; as written, then simplified
    (the 谱 keeps 乾荷叶 and 徵招, which a character-by-character simplification would turn into 干荷叶 and 征招)."""
    parts: list[str] = []
    for text in (title.strip(), to_simplified(title).strip()):
        parts += [p for inner in _BOOK_TITLE.findall(text) for p in _SEPARATORS.split(inner) if p]
        parts += [p for p in _SEPARATORS.split(re.sub(r"[《》〈〉「」“”\"']", " ", text)) if p]
    return list(dict.fromkeys(parts))


def title_head(title: str | None) -> str | None:
    """The part of a title that names the 词牌 when it has one (before ·, inside 《》), for messages."""
    if not title:
        return None
    parts = _title_parts(title)
    return parts[0] if parts else None


@lru_cache(maxsize=4096)
def parse_cipai(title: str | None) -> str | None:
    """The canonical 词牌 named by a title ('浣溪沙·春晓', '《浣溪沙》', '浣溪沙', '调寄浣溪沙', traditional too), or None."""
    if not title:
        return None
    index = name_index()
    whole = index.get(title.strip()) or index.get(to_simplified(title).strip())  # names with brackets: 三台（大曲）
    if whole:
        return whole
    parts = _title_parts(title)
    for part in parts:
        if part in index:
            return index[part]
    lengths = sorted({len(name) for name in index if len(name) >= 2}, reverse=True)
    for part in parts:
        for prefix in ("调寄", "寄调", "词寄", ""):
            if not part.startswith(prefix):
                continue
            rest = part[len(prefix):]
            for size in lengths:
                name = rest[:size]
                # Without 调寄 a name must be followed by something that is not a 词牌 suffix (浣溪沙春晓).
                if len(name) == size and name in index and not rest[size:].startswith(_DERIVED_SUFFIX):
                    return index[name]
    return None


def closest_names(name: str, n: int = 5) -> list[str]:
    """Known 词牌 names (or aliases, shown as 'alias（=词牌）') closest to an unknown name."""
    index = name_index()
    found = difflib.get_close_matches(to_simplified(name), list(index), n=n, cutoff=0.3)
    return [f if index[f] == f else f"{f}（={index[f]}）" for f in found]
