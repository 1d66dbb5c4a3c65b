"""One run's shared state (config, prompt, store appender, counters, progress) and the scan/plan preamble."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from poemlib.annotate.config import AnnotateConfig
from poemlib.annotate.cost import usage_cost
from poemlib.annotate.prompt import Prompt
from poemlib.annotate.revision import meter_summary
from poemlib.annotate.store import ImageEntry, Scan, is_final, load_store, scan_images
from poemlib.annotate.summary import RunSummary
from poemlib.gemini import DEFAULT_ENDPOINT, Outcome, is_loopback
from poemlib.io import JSONLAppender
from poemlib.progress import progress_bar
from poemlib.schema import AnnotationRecord, Status, TokenUsage


class Session:
    """State shared by one run: config, prompt, store appender, counters and the progress bar."""

    def __init__(self, cfg: AnnotateConfig, prompt: Prompt, store_path: Path, summary: RunSummary) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.store_path = store_path
        self.summary = summary
        self.counts: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.usage = TokenUsage()
        self.cost = 0.0
        self.appender: JSONLAppender | None = None
        self.pending: dict[str, AnnotationRecord] = {}  # ok records with revision rounds still to do, by sha256
        self._usage_on_disk: dict[str, TokenUsage] = {}  # what earlier lines of a revised image already counted
        self.bar: Any = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None

    def seed_usage(self, records: Iterable[AnnotationRecord]) -> None:
        """Remember the usage already on disk for images whose rounds resume (so it is not counted twice)."""
        for record in records:
            self._usage_on_disk[record.image_sha256] = record.usage

    def open(self) -> None:
        """Open the store for appending (a torn tail is repaired first)."""
        self.appender = JSONLAppender(self.store_path)

    def start_progress(self, total: int, enabled: bool, desc: str) -> None:
        """A bar with live ok / unfit / failed counts (the project's progress policy; nothing when off or empty)."""
        if total:
            self.bar = progress_bar(total, desc=desc, unit="img", enabled=None if enabled else False)

    def advance(self) -> None:
        """One more image done on the bar."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(ok=self.counts["ok"], unfit=self.counts["unfit"], failed=self.counts["failed"], refresh=False)

    def close(self) -> None:
        """Finish pending writes, close the store and the bar."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # a write already handed to the thread completes before the file closes
            self._writer = None
        if self.appender is not None:
            self.appender.close()
            self.appender = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def write(self, record: AnnotationRecord, *, batch: bool = False, count: bool = True, final: bool = True) -> None:
        """Append one record durably (flush + fsync) and count it (an intermediate round: its tokens only)."""
        assert self.appender is not None
        self.appender.write(record.store_dict())
        if count:
            self._count(record, batch, final)

    async def awrite(self, record: AnnotationRecord, *, final: bool = True) -> None:
        """`write` with the fsync on the writer thread (one thread: lines stay whole and in order) so the loop keeps going."""
        assert self.appender is not None
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="poemlib-store")
        await asyncio.get_running_loop().run_in_executor(self._writer, self.appender.write, record.store_dict())
        self._count(record, False, final)

    def _count(self, record: AnnotationRecord, batch: bool, final: bool = True) -> None:
        # A revised image is written once per round with its usage summed so far: count only what is new.
        new_usage = record.usage - self._usage_on_disk.get(record.image_sha256, TokenUsage())
        if record.first_answer is not None or record.revisions:
            self._usage_on_disk[record.image_sha256] = record.usage
        self.usage = self.usage + new_usage
        self.cost += usage_cost(new_usage, self.cfg.prices, batch=batch)
        if not final:
            return
        self.counts[record.status.value] += 1
        if record.status is Status.failed:
            self.by_kind[record.error_kind or "unknown"] += 1
        if record.revisions:
            self.summary.revised += 1
            self.summary.revised_passing += int(bool(record.annotation) and _passes(record))
        self.advance()

    def record(self, entry: ImageEntry, outcome: Outcome, *, attempts: int, latency_s: float | None, source: str | None = None) -> AnnotationRecord:
        """The store record of one image's outcome."""
        return AnnotationRecord(
            image_sha256=entry.sha256,
            image_paths=entry.paths,
            status=outcome.status,
            annotation=outcome.annotation,
            error_kind=outcome.error_kind,  # type: ignore[arg-type]
            error_message=outcome.error_message,
            raw_text=outcome.raw_text,
            model=self.cfg.model,
            prompt_version=self.prompt.version,
            usage=outcome.usage,
            latency_s=None if latency_s is None else round(latency_s, 3),
            attempts=attempts,
            source=source,
        )

    def finish(self, started: float, attempted: int) -> RunSummary:
        """Fill the summary's counts, usage, cost and timing."""
        s = self.summary
        s.ok, s.unfit, s.failed = self.counts["ok"], self.counts["unfit"], self.counts["failed"]
        s.failed_by_kind = dict(sorted(self.by_kind.items()))
        s.usage = self.usage
        s.cost_usd = round(self.cost, 6)
        s.attempted = attempted
        s.wall_s = time.monotonic() - started
        s.images_per_min = attempted / s.wall_s * 60 if s.wall_s > 0 else 0.0
        return s


def new_summary(mode: str, store_path: Path, base_url: str | None, model: str, prompt_version: str, images_dir: str | None = None) -> RunSummary:
    """An empty summary for a run against `base_url` (the Gemini API when None)."""
    return RunSummary(
        mode=mode, store=str(store_path), images_dir=images_dir, endpoint=base_url or DEFAULT_ENDPOINT, offline=is_loopback(base_url), model=model, prompt_version=prompt_version  # type: ignore[arg-type]
    )


def _count_scan(scan: Scan, summary: RunSummary) -> None:
    summary.files_found = scan.files
    summary.images_total = len(scan.entries)
    summary.duplicate_files = scan.files - len(scan.unreadable) - len(scan.entries)
    summary.ignored_files = scan.ignored
    summary.unreadable = scan.unreadable


def plan(
    scan: Scan, store_path: Path, cfg: AnnotateConfig, summary: RunSummary, limit: int | None, pending: dict[str, AnnotationRecord] | None = None
) -> tuple[list[ImageEntry], list[AnnotationRecord]]:
    """Images to request now, and path-update records for done images that gained a new name; ok records with
    revision rounds still to do go into `pending` (their first answer is not asked again)."""
    pending = {} if pending is None else pending
    existing = load_store(store_path)
    todo: list[ImageEntry] = []
    updates: list[AnnotationRecord] = []
    for sha, entry in scan.entries.items():
        record = existing.get(sha)
        if is_final(record, cfg.retry_on_rerun, cfg.revise_rounds):
            assert record is not None
            summary.skipped_done += 1
            new_paths = [p for p in entry.paths if p not in record.image_paths]
            if new_paths:
                updates.append(record.model_copy(update={"image_paths": [*record.image_paths, *new_paths]}))
                summary.paths_added += len(new_paths)
            continue
        if record is not None and record.status is Status.ok:
            pending[sha] = record  # revision rounds still to do
            summary.revisions_resumed += 1
        elif record is not None:
            summary.retried_from_store += 1
        todo.append(entry)
    _count_scan(scan, summary)
    if limit is not None and limit >= 0 and len(todo) > limit:
        summary.remaining = len(todo) - limit
        todo = todo[:limit]
    return todo, updates


async def start_run(
    images_dir: str | os.PathLike[str], store_path: Path, cfg: AnnotateConfig, prompt: Prompt, base_url: str | None, limit: int | None, mode: str
) -> tuple[Session, RunSummary, list[ImageEntry]]:
    """Scan the images, open the store and plan what still needs a request (shared by online and batch runs)."""
    scan = await asyncio.to_thread(scan_images, images_dir)
    summary = new_summary(mode, store_path, base_url, cfg.model, prompt.version, str(images_dir))
    session = Session(cfg, prompt, store_path, summary)
    session.open()  # repairs a torn tail first, so the plan below reads exactly what later appends build on
    try:
        todo, updates = plan(scan, store_path, cfg, summary, limit, session.pending)
        session.seed_usage(session.pending.values())
        for record in updates:
            session.write(record, count=False)
    except BaseException:
        session.close()
        raise
    return session, summary, todo


def _passes(record: AnnotationRecord) -> bool:
    """The record's final poem is 合律."""
    return meter_summary(record.annotation).passes
