"""Input files and image paths: folder expansion, legacy path normalisation, finding and hashing image files."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from poemlib.config import resolve_path
from poemlib.images import file_sha256

_DRIVE = re.compile(r"^[A-Za-z]:/")
_SLASHES = re.compile(r"/{2,}")


class InputFile(NamedTuple):
    """An input to read: its name as the user gave it (used in sources and the report) and where it lies."""

    label: str
    path: Path


def expand_inputs(inputs: list[str | os.PathLike[str]]) -> list[InputFile]:
    """Files to read: each input as given, folders expanded to their *.json / *.jsonl files (sorted); located by
    `poemlib.config.resolve_path` (the current directory first)."""
    files: list[InputFile] = []
    for raw in inputs:
        path = resolve_path(raw, prefer_cwd=True)
        if path.is_dir():
            names = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".json", ".jsonl"))
            files.extend(InputFile(str(Path(raw) / name), path / name) for name in names)
        elif path.exists():
            files.append(InputFile(str(Path(raw)), path))
        else:
            raise FileNotFoundError(f"input not found: {raw}" + (f" (looked for {path})" if str(path) != str(raw) else ""))
    return files


def normalise_path(path: str) -> str:
    """Unify a (possibly Windows) path: '/' separators, no './', no repeated slashes; case is kept."""
    p = _SLASHES.sub("/", str(path).strip().replace("\\", "/"))
    while p.startswith("./"):
        p = p[2:]
    return p


def relative_for_schema(rel: str) -> str:
    """A path acceptable in AnnotationRecord.image_paths (no drive, no leading slash)."""
    return _DRIVE.sub("", rel).lstrip("/") or rel


class ImageResolver:
    """Finds image files under a root (exact, then case-insensitive) and hashes them once each."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root is not None else None
        self._listing: dict[Path, dict[str, str] | None] = {}
        self._sha: dict[Path, str] = {}
        self._found: dict[str, tuple[Path, str] | None] = {}

    def _list(self, directory: Path) -> dict[str, str] | None:
        """Lower-cased name -> real name of a folder's entries (None when unreadable), read once."""
        if directory not in self._listing:
            try:
                self._listing[directory] = {name.lower(): name for name in os.listdir(directory)}
            except OSError:
                self._listing[directory] = None
        return self._listing[directory]

    def find(self, rel: str, repairs: Counter) -> tuple[Path, str] | None:
        """(absolute file, relative POSIX path as found) for a normalised path, or None when missing."""
        if self.root is None:
            return None
        if rel in self._found:
            hit = self._found[rel]
        else:
            hit = self._find_uncached(rel)
            self._found[rel] = hit
        if hit is not None and hit[1] != rel:
            repairs["image_path_resolved_differently"] += 1
        return hit

    def _find_uncached(self, rel: str) -> tuple[Path, str] | None:
        """Exact match first, then a case-insensitive walk; absolute legacy paths by ever shorter suffixes."""
        assert self.root is not None
        parts = [p for p in _DRIVE.sub("", rel).split("/") if p and p != "."]
        starts = range(len(parts)) if (rel.startswith("/") or _DRIVE.match(rel)) else range(1)
        for start in starts:
            sub = parts[start:]
            if not sub:
                continue
            exact = self.root.joinpath(*sub)
            if exact.is_file():
                return exact, "/".join(sub)
            hit = self._find_ignoring_case(sub)
            if hit is not None:
                return hit
        return None

    def _find_ignoring_case(self, parts: list[str]) -> tuple[Path, str] | None:
        """The file whose path matches `parts` up to letter case, or None."""
        assert self.root is not None
        current, found = self.root, []
        for part in parts:
            listing = self._list(current)
            if listing is None or part.lower() not in listing:
                return None
            found.append(listing[part.lower()])
            current = current / found[-1]
        return (current, "/".join(found)) if current.is_file() else None

    def sha(self, path: Path) -> str:
        """sha256 of a file, computed once."""
        if path not in self._sha:
            self._sha[path] = file_sha256(path)
        return self._sha[path]

    def exists_any(self, rels: list[str]) -> bool | None:
        """Whether any of the paths exists (None without a root)."""
        if self.root is None:
            return None
        return any((self.root / r).is_file() for r in rels)
