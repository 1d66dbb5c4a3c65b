"""Reads every input in order, yields its records as Items, supersedes store retries and keeps read-level counts."""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poemlib.clean.formats import read_contents
from poemlib.clean.legacy import (
    FIELD_ALIASES,
    Malformed,
    NotJSON,
    first_key,
    is_record_shaped,
)
from poemlib.clean.paths import ImageResolver, InputFile
from poemlib.clean.records import Item, legacy_item, store_item
from poemlib.clean.report import CleanReport, InputSummary, MalformedRecord

_TORN = "incomplete final line (torn write)"
_FILE_COUNTS = ("records_read", "store_records", "legacy_records", "malformed", "superseded")


class Reader:
    """Reads every input, yields Items in input order, and keeps the read-level counts."""

    def __init__(self, images: ImageResolver, report: CleanReport, repairs: Counter) -> None:
        self.images = images
        self.report = report
        self.repairs = repairs
        self.status: Counter = Counter()
        self.failed_kinds: Counter = Counter()
        self.types: Counter = Counter()
        self.tokens = array("q")
        self.tokens_missing = 0
        self._file_counts: Counter = Counter()  # the current file's counts (copied into its InputSummary at the end)

    # -- per record -------------------------------------------------------

    def _malformed(self, summary: InputSummary, reason: str, *, index: int | None = None, line: int | None = None) -> None:
        """List a record that could not be read or made schema-valid."""
        self._file_counts["malformed"] += 1
        self.report.malformed.append(MalformedRecord(file=summary.path, index=index, line=line, reason=reason))

    def _count(self, item: Item) -> None:
        """Add a record to the read-level counts."""
        self.status[item.status] += 1
        if item.status == "failed":
            self.failed_kinds[item.error_kind] += 1
        elif item.status == "ok":
            self.types[item.ptype] += 1
        if item.tokens > 0:
            self.tokens.append(item.tokens)
        else:
            self.tokens_missing += 1

    def _convert(self, obj: dict[str, Any] | bytes, order: tuple[int, int], source: str, mtime: datetime) -> Item:
        """A store line or a legacy record as an Item (raises Malformed)."""
        if isinstance(obj, bytes) or "image_sha256" in obj:
            item = store_item(obj, order, source, self.images)
            self._file_counts["store_records"] += 1
            return item
        if is_record_shaped(obj) or first_key(obj, FIELD_ALIASES["poem_content"]):
            item = legacy_item(obj, order, source, mtime, self.images, self.repairs)
            self._file_counts["legacy_records"] += 1
            return item
        raise Malformed(f"neither a store record (image_sha256) nor a legacy record (image_path); keys: {sorted(obj)[:8]}")

    def _item(self, summary: InputSummary, obj: Any, order: tuple[int, int], source: str, mtime: datetime, locator: dict[str, int]) -> Item | None:
        """The Item of one parsed record, or None when it is malformed (listed); NotJSON is left to the caller."""
        if not isinstance(obj, dict | bytes):
            self._malformed(summary, f"expected a JSON object, got {type(obj).__name__}", **locator)
            return None
        try:
            item = self._convert(obj, order, source, mtime)
        except NotJSON:
            raise
        except Malformed as exc:
            self._malformed(summary, str(exc), **locator)
            return None
        self._file_counts["records_read"] += 1
        self._count(item)
        return item

    # -- per file -----------------------------------------------------------

    def _records(self, path: Path, file_no: int, summary: InputSummary) -> Iterator[Item]:
        """Items of one file in file order (store lines of the same image not yet superseded)."""
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        contents = read_contents(path)
        summary.format = contents.format
        summary.error = contents.error
        if contents.format == "jsonl":
            yield from self._from_jsonl(path, summary, file_no, mtime)
            return
        for index, obj in contents.elements or ():
            item = self._item(summary, obj, (file_no, index), f"{summary.path}#{index}", mtime, {"index": index})
            if item is not None:
                yield item
        if contents.broken is not None:
            self._malformed(summary, contents.broken[1], index=contents.broken[0])

    def _jsonl_line(self, summary: InputSummary, raw: bytes, number: int, file_no: int, mtime: datetime) -> Item | None:
        """The Item of one JSONL line, or None (blank or malformed, listed)."""
        torn = not raw.endswith(b"\n")
        locator = {"line": number}
        source = f"{summary.path}:{number}"
        if b'"image_sha256"' in raw:
            # Our store: pydantic parses and validates the line in one go (the hot path at scale).
            try:
                return self._item(summary, raw, (file_no, number), source, mtime, locator)
            except NotJSON as exc:
                self._malformed(summary, _TORN if torn else f"not valid JSON ({exc})", line=number)
                return None
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._malformed(summary, _TORN if torn else f"not valid JSON ({exc})", line=number)
            return None
        return self._item(summary, obj, (file_no, number), source, mtime, locator)

    def _from_jsonl(self, path: Path, summary: InputSummary, file_no: int, mtime: datetime) -> Iterator[Item]:
        """Items of a JSONL file, streamed line by line."""
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                item = self._jsonl_line(summary, raw, number, file_no, mtime)
                if item is not None:
                    yield item

    def _file_items(self, path: Path, file_no: int, summary: InputSummary, on_pending: Callable[[Item], object] | None) -> Iterator[tuple[Item, bool]]:
        """(item, superseded) of one file; a store's lines for one image wait until the file is read (last wins).

        `on_pending` sees each store line as it is read, before that wait (clean starts its meter checks there).
        """
        pending: dict[str, Item] = {}
        try:
            for item in self._records(path, file_no, summary):
                if item.kind != "store":
                    yield item, False
                    continue
                previous = pending.get(item.identity)
                if previous is not None:
                    self._file_counts["superseded"] += 1
                    yield previous, True
                pending[item.identity] = item
                if on_pending is not None:
                    on_pending(item)
        except (OSError, UnicodeDecodeError) as exc:
            read_any = self._file_counts["records_read"]
            summary.error = f"reading stopped: {exc}" if read_any else f"cannot read: {exc}"
            if not read_any:
                summary.format = "unreadable"
        yield from ((item, False) for item in sorted(pending.values(), key=lambda it: it.order))

    def _finish_summary(self, summary: InputSummary) -> None:
        """Copy the file's counts into its summary and name the kind of records it held."""
        for name in _FILE_COUNTS:
            setattr(summary, name, self._file_counts[name])
        if summary.store_records and summary.legacy_records:
            summary.format += " (mixed)"
        elif summary.store_records:
            summary.format += " (store)"
        elif summary.legacy_records:
            summary.format += " (legacy)"

    def items(
        self, inputs: list[InputFile], on_file_done: Callable[[], object] | None = None, on_pending: Callable[[Item], object] | None = None
    ) -> Iterator[tuple[Item, bool]]:
        """(item, superseded) for every record of every input, superseded store lines flagged; `on_file_done` is
        called after each input (progress); `on_pending` sees each store line as soon as it is read."""
        seen: dict[Path, int] = {}
        for file_no, (label, path) in enumerate(inputs):
            summary = InputSummary(path=label, format="?")
            self.report.inputs.append(summary)
            resolved = path.resolve()
            if resolved in seen:
                summary.format = "skipped"
                summary.error = f"same file as input #{seen[resolved] + 1}; read once"
            else:
                seen[resolved] = file_no
                self._file_counts = Counter()
                yield from self._file_items(path, file_no, summary, on_pending)
                self._finish_summary(summary)
            if on_file_done is not None:
                on_file_done()
