"""Input file formats, told apart by content: a JSON list, a JSON object holding records, or JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from poemlib.clean.legacy import is_record_shaped

_CONTAINER_KEYS = ("records", "data", "items", "results", "annotations", "entries")
_SPACE = " \t\r\n"


class FileContents(NamedTuple):
    """What a file holds: its format, the (index, value) elements of a JSON file, a break-off, or why unreadable.

    format is "empty", "json-list", "json-object", "jsonl" (elements None: the lines are streamed) or "unreadable".
    """

    format: str
    elements: list[tuple[int, Any]] | None = None
    broken: tuple[int, str] | None = None
    error: str | None = None


def _utf8(raw: bytes) -> str:
    """UTF-8 text without a byte order mark."""
    return raw.decode("utf-8-sig")


def _skip_space(text: str, pos: int) -> int:
    """The first position at or after `pos` that is not JSON whitespace."""
    n = len(text)
    while pos < n and text[pos] in _SPACE:
        pos += 1
    return pos


def json_array_elements(text: str) -> tuple[list[tuple[int, Any]], tuple[int, str] | None]:
    """Elements of a JSON array read one by one; a break-off is returned as (index, reason) instead of raising."""
    decoder = json.JSONDecoder()
    elements: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    index = 0
    n = len(text)
    while True:
        pos = _skip_space(text, pos)
        if pos < n and text[pos] == "]":
            rest = text[pos + 1 :].strip()
            return elements, (None if not rest else (index, f"unexpected text after the closing ']' ({rest[:40]!r})"))
        if index > 0:
            if pos < n and text[pos] == ",":
                pos = _skip_space(text, pos + 1)
            else:
                return elements, (index, f"JSON list breaks off at character {pos} (expected ',' or ']'); the rest of the file is unreadable")
        if pos >= n:
            return elements, (index, "JSON list ends without ']' (truncated file); the rest is unreadable")
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return elements, (index, f"invalid JSON at element {index}: {exc.msg} (character {exc.pos}); the rest of the file is unreadable")
        elements.append((index, value))
        index += 1


def unwrap_object(obj: dict[str, Any]) -> list[tuple[int, Any]] | None:
    """Records held by a top-level JSON object: itself when record-shaped, else its list of records."""
    if is_record_shaped(obj):
        return [(0, obj)]
    for key in _CONTAINER_KEYS:
        if isinstance(obj.get(key), list):
            return list(enumerate(obj[key]))
    lists = [v for v in obj.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(lists) == 1:
        return list(enumerate(lists[0]))
    return None


def _looks_like_jsonl(path: Path, text_head: str) -> bool:
    """A *.jsonl name, or a first line that is a whole record (or not an object at all)."""
    if path.suffix.lower() == ".jsonl":
        return True
    try:
        obj = json.loads(text_head.split("\n", 1)[0])
    except json.JSONDecodeError:
        return False
    return is_record_shaped(obj) or not isinstance(obj, dict)


def _json_object_contents(path: Path) -> FileContents:
    """A whole-file JSON object (its records), or JSONL after all when the file holds several objects."""
    try:
        obj = json.loads(_utf8(path.read_bytes()))
    except json.JSONDecodeError as exc:
        # JSONL whose first object is not record-shaped: the lines are read one by one.
        if exc.msg == "Extra data":
            return FileContents("jsonl")
        return FileContents("unreadable", error=f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    elements = unwrap_object(obj) if isinstance(obj, dict) else None
    if elements is None:
        return FileContents("unreadable", error="a JSON object that is neither a record nor holds a list of records")
    return FileContents("json-object", elements)


def read_contents(path: Path) -> FileContents:
    """Tell a file's format from its first bytes and read the JSON kinds whole (raises OSError, UnicodeDecodeError)."""
    with path.open("rb") as fh:
        head = fh.read(65536)
    text_head = head.decode("utf-8-sig", errors="replace").lstrip()
    if not text_head:
        return FileContents("empty")
    first = text_head[0]
    if first == "[":
        elements, broken = json_array_elements(_utf8(path.read_bytes()))
        return FileContents("json-list", elements, broken)
    if first != "{":
        return FileContents("unreadable", error=f"not JSON (starts with {first!r})")
    if _looks_like_jsonl(path, text_head):
        return FileContents("jsonl")
    return _json_object_contents(path)
