"""Durable files shared by every stage: atomic whole-file writes, JSONL reading and appending."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class JSONLError(ValueError):
    """A line of a JSONL file is not valid JSON (and is not a torn final line)."""


def iter_jsonl(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line_number, object) for each line; a torn last line (crash mid-write) is skipped, any other bad line raises."""
    path = Path(path)
    with path.open("rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Only the final line without a trailing newline can be a torn write.
            if tolerate_torn_tail and number - 1 == last:
                continue
            raise JSONLError(f"{path}:{number}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise JSONLError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def read_jsonl(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = True) -> list[dict[str, Any]]:
    """Read every object of a JSONL file."""
    return [obj for _, obj in iter_jsonl(path, tolerate_torn_tail=tolerate_torn_tail)]


class JSONLAppender:
    """Append-only JSONL writer: one record per line, flushed and fsynced so a crash loses at most the line in flight."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._fh = self.path.open("ab")

    def _repair_torn_tail(self) -> None:
        """Make the file end at a line boundary: a complete last record gets its newline, a torn one is dropped."""
        if not self.path.exists() or not self.path.stat().st_size:
            return
        with self.path.open("rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            start = data.rfind(b"\n") + 1
            try:
                json.loads(data[start:].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                # A crash mid-write: never a complete record, and readers skip it too.
                fh.truncate(start)
            else:
                fh.write(b"\n")

    def write(self, obj: dict[str, Any]) -> None:
        """Append one object durably."""
        self._fh.write(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> "JSONLAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write(path: str | os.PathLike[str], data: str | bytes | Iterable[str | bytes]) -> Path:
    """Replace `path` with `data` (text is UTF-8) so that a reader or a crash sees the old file or the new, never a
    part: temp file beside it, fsync, rename, fsync of the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    chunks = [data] if isinstance(data, (str, bytes)) else data
    try:
        # A 1 MB buffer: clean streams ~100,000 lines of ~3 KB here, and the default 8 KB one flushed every other line.
        with tmp.open("wb", buffering=1 << 20) as fh:
            for chunk in chunks:
                fh.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX needs the directory synced; elsewhere this is a no-op)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> Path:
    """Write one JSON document atomically (UTF-8, Chinese kept readable)."""
    return atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def write_jsonl(path: str | os.PathLike[str], objects: Iterable[dict[str, Any]]) -> Path:
    """Write objects to a fresh JSONL file atomically."""
    return atomic_write(path, (json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects))
