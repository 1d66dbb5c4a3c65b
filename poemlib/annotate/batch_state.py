"""Batch mode's durable state (STORE.jsonl.batch.json) and the builder that packs requests into jobs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from poemlib.annotate.config import AnnotateConfig
from poemlib.annotate.prompt import Prompt, rest_request
from poemlib.annotate.store import ImageEntry, batch_state_path
from poemlib.io import atomic_write


class BatchJobState(BaseModel):
    """One submitted Batch API job and the images it holds."""

    name: str
    display_name: str
    input: Literal["inline", "file"]
    input_file: str | None = None
    submitted_at: datetime
    images: list[dict[str, Any]]  # {"sha256": …, "paths": [...]}
    state: str = "JOB_STATE_PENDING"
    collected: bool = False
    error: str | None = None
    kind: Literal["first", "revision"] = "first"  # revision: each image also names the round it asks for


class BatchState(BaseModel):
    """STORE.jsonl.batch.json: the jobs of one submission, until all are collected."""

    version: int = 1
    store: str
    images_dir: str
    model: str
    prompt_version: str
    created_at: datetime
    jobs: list[BatchJobState] = Field(default_factory=list)


def write_state(path: Path, state: BatchState) -> None:
    """Write the state atomically (a crash leaves the old or the new file, never half of one)."""
    atomic_write(path, state.model_dump_json(indent=2))


def read_batch_state(store_path: str | os.PathLike[str]) -> BatchState | None:
    """The pending batch state of a store, or None."""
    path = batch_state_path(store_path)
    if not path.exists():
        return None
    return BatchState.model_validate_json(path.read_text(encoding="utf-8"))


def utc_stamp() -> str:
    """Now as 20260101T120000Z (job display names, archived state files)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class BatchBuilder:
    """One job's requests: kept in memory while inline (a few MB), streamed to a JSONL spool file in file mode."""

    def __init__(self, cfg: AnnotateConfig, prompt: Prompt, mode: str, spool_path: Callable[[], Path]) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.mode = mode  # inline | file
        self._spool_path = spool_path
        self.entries: list[ImageEntry] = []
        self.inline: list[bytes] = []
        self.spool: Path | None = None
        self._fh: Any = None
        self.bytes = 0

    def size_of(self, jpeg: bytes) -> int:
        """Bytes one request adds to the job (base64 image, system prompt, envelope)."""
        return len(jpeg) * 4 // 3 + len(self.prompt.system.encode("utf-8")) + 2048

    def full_after(self, jpeg: bytes) -> bool:
        """True when adding this image would overflow the job (size or request count)."""
        limit = self.cfg.batch.max_inline_bytes if self.mode == "inline" else self.cfg.batch.max_file_bytes
        return bool(self.entries) and (self.bytes + self.size_of(jpeg) > limit or len(self.entries) >= self.cfg.batch.max_requests_per_job)

    def _write_line(self, entry: ImageEntry, jpeg: bytes) -> None:
        if self._fh is None:
            self.spool = self._spool_path()
            self._fh = self.spool.open("w", encoding="utf-8")
        self._fh.write(json.dumps({"key": entry.sha256, "request": rest_request(self.cfg, self.prompt, jpeg)}, ensure_ascii=False) + "\n")

    def switch_to_file(self) -> None:
        """Move what is held inline into the spool file; from now on requests go straight to the file."""
        self.mode = "file"
        for entry, jpeg in zip(self.entries, self.inline):
            self._write_line(entry, jpeg)
        self.inline = []

    def add(self, entry: ImageEntry, jpeg: bytes) -> None:
        """Add one image's request."""
        if self.mode == "inline":
            self.inline.append(jpeg)
        else:
            self._write_line(entry, jpeg)
        self.entries.append(entry)
        self.bytes += self.size_of(jpeg)

    def close_spool(self) -> Path | None:
        """Close the spool file (if any) and return its path."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return self.spool

    def reset(self) -> None:
        """Empty the builder for the next job; the spool file is removed."""
        self.close_spool()
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)
        self.entries, self.inline, self.spool, self.bytes = [], [], None, 0
