"""The store: an append-only JSONL of AnnotationRecords (last line per image wins), and the scan of an images folder."""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from poemlib.annotate.errors import AnnotateConfigError
from poemlib.annotate.revision import needs_revision
from poemlib.config import describe_validation_error
from poemlib.gemini import TRANSIENT_KINDS
from poemlib.images import file_sha256, iter_image_files, relative_posix
from poemlib.io import iter_jsonl
from poemlib.schema import AnnotationRecord, Status

BATCH_STATE_SUFFIX = ".batch.json"


def iter_store(path: str | os.PathLike[str]) -> Iterator[AnnotationRecord]:
    """Every record of a store in file order (a torn last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return
    for number, obj in iter_jsonl(path):
        try:
            yield AnnotationRecord.model_validate(obj)
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not an AnnotationRecord: {len(exc.errors())} schema error(s): {describe_validation_error(exc)}") from exc


def load_store(path: str | os.PathLike[str]) -> dict[str, AnnotationRecord]:
    """The current record per image sha256 (the last line wins); {} when the store does not exist."""
    return {record.image_sha256: record for record in iter_store(path)}


def is_final(record: AnnotationRecord | None, retry_on_rerun: Iterable[str] = (*TRANSIENT_KINDS, "api_error"), revise_rounds: int = 0) -> bool:
    """True when a re-run must not request this image again: not a retryable failure, and (with `revise_rounds`) not
    a poem failing 格律 with revision rounds still to do."""
    if record is None:
        return False
    if record.status is Status.failed and record.error_kind in set(retry_on_rerun):
        return False
    return not needs_revision(record, revise_rounds)


def batch_state_path(store_path: str | os.PathLike[str]) -> Path:
    """Where a store's pending batch jobs are remembered: STORE.jsonl.batch.json next to the store."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + BATCH_STATE_SUFFIX)


@dataclass
class ImageEntry:
    """One distinct image (by sha256) and every file that holds its bytes."""

    sha256: str
    paths: list[str]
    files: list[Path]


@dataclass
class Scan:
    """What a folder holds."""

    entries: dict[str, ImageEntry]
    files: int
    unreadable: list[str]
    ignored: int


def scan_images(images_dir: str | os.PathLike[str], *, workers: int = 8) -> Scan:
    """Hash every image-like file under images_dir (in parallel), grouping files with identical bytes."""
    root = Path(images_dir)
    if not root.is_dir():
        raise AnnotateConfigError(f"images folder not found: {root}")
    files = list(iter_image_files(root))
    ignored = sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) - len(files)

    def digest(path: Path) -> tuple[Path, str | None, str | None]:
        try:
            return path, file_sha256(path), None
        except OSError as exc:
            return path, None, f"{relative_posix(path, root)}: cannot be read ({exc.strerror or exc})"

    entries: dict[str, ImageEntry] = {}
    unreadable: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, sha, problem in pool.map(digest, files):
            if sha is None:
                unreadable.append(problem or str(path))
                continue
            entry = entries.setdefault(sha, ImageEntry(sha, [], []))
            entry.paths.append(relative_posix(path, root))
            entry.files.append(path)
    return Scan(entries, len(files), unreadable, max(0, ignored))
