"""The online run: producers prepare photos, `concurrency` workers send them, one conversation per image.

Each image is a small conversation with Gemini (`ImageConversation`): today one turn (the photo and the
instruction); further turns (a revision from the meter's findings, a retry of an unreadable answer) append to the
same contents and call `_Annotator.ask` again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poemlib import gemini
from poemlib.annotate.client import open_client, run_key
from poemlib.annotate.config import AnnotateConfig, load_annotate_config
from poemlib.annotate.errors import (
    AnnotateAuthError,
    AnnotateConfigError,
    AnnotateError,
    AnnotateRunError,
)
from poemlib.annotate.prepare import prepare_for_gemini
from poemlib.annotate.prompt import generation_config, load_prompt
from poemlib.annotate.session import Session, start_run
from poemlib.annotate.store import ImageEntry, batch_state_path
from poemlib.annotate.summary import RunSummary
from poemlib.gemini import Outcome
from poemlib.images import BadImageError
from poemlib.schema import AnnotationRecord, Status

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """One request of a conversation and what its answer amounts to."""

    outcome: Outcome
    attempts: int
    latency_s: float


@dataclass
class ImageConversation:
    """One image's exchange with Gemini: the contents sent so far and the turn each request produced."""

    entry: ImageEntry
    contents: list[Any]
    turns: list[Turn] = field(default_factory=list)

    @property
    def final(self) -> Turn:
        """The turn whose outcome becomes the image's record."""
        return self.turns[-1]


class _Annotator:
    """One online run's requests: preparation, the limiter and retries, each image's conversation, run-level stops."""

    def __init__(self, session: Session, client: Any, limiter: gemini.RateLimiter) -> None:
        self.s = session
        self.cfg = session.cfg
        self.settings = session.cfg.gemini
        self.client = client
        self.limiter = limiter
        self.gen_config = generation_config(self.cfg, session.prompt)
        self.prepare_gate = asyncio.Semaphore(self.cfg.prepare_workers)
        self.stats = gemini.CallStats()
        self.consecutive_api_errors = 0

    async def ask(self, contents: list[Any]) -> Turn:
        """One generate_content with the retry policy, interpreted; a rejected key or model stops the run."""
        started = time.monotonic()

        def request() -> Any:
            return self.client.aio.models.generate_content(model=self.cfg.model, contents=contents, config=self.gen_config)

        try:
            result = await gemini.call_with_retries(request, self.settings, limiter=self.limiter, what="annotate an image", stats=self.stats)
        except gemini.GeminiAuthError as exc:
            raise AnnotateAuthError(
                f"Gemini rejected the API key ({exc.failure.message}). Stopped the run at once; records already written are kept. "
                "Check GEMINI_API_KEY / GOOGLE_API_KEY (or .env)."
            ) from exc
        except gemini.GeminiRefusedError as exc:
            raise AnnotateRunError(f"Gemini refused the request ({exc.failure.message}); stopped the run. Check model and config.") from exc
        latency = time.monotonic() - started
        if result.failure is not None:
            return Turn(Outcome.failed(result.failure.kind, result.failure.message), result.attempts, latency)
        return Turn(gemini.interpret_response(result.value), result.attempts, latency)

    async def prepare(self, entry: ImageEntry) -> tuple[ImageEntry, bytes | None, str | None]:
        """(entry, JPEG to send, None) or (entry, None, why the image is unusable)."""
        async with self.prepare_gate:
            try:
                return entry, await asyncio.to_thread(prepare_for_gemini, entry.files[0], self.cfg, name=entry.paths[0]), None
            except BadImageError as exc:
                return entry, None, str(exc)
            except FileNotFoundError as exc:
                return entry, None, f"{entry.paths[0]}: file disappeared ({exc})"

    async def converse(self, entry: ImageEntry, jpeg: bytes) -> ImageConversation:
        """The image's conversation: the photo with the instruction (one turn)."""
        conversation = ImageConversation(entry, gemini.user_contents(jpeg, self.s.prompt.user))
        conversation.turns.append(await self.ask(conversation.contents))
        return conversation

    async def annotate(self, entry: ImageEntry, jpeg: bytes | None, problem: str | None) -> AnnotationRecord:
        """One prepared image: its conversation, as a record; never raises for per-image problems."""
        if jpeg is None:
            return self.s.record(entry, Outcome.failed("bad_image", problem or "unusable image"), attempts=0, latency_s=None)
        final = (await self.converse(entry, jpeg)).final
        record = self.s.record(entry, final.outcome, attempts=final.attempts, latency_s=final.latency_s)
        await self._stop_after_repeated_rejections(record)
        return record

    async def _stop_after_repeated_rejections(self, record: AnnotationRecord) -> None:
        """Abort the run (record written first) after `abort_after_consecutive_api_errors` api_errors in a row."""
        if record.error_kind == "api_error":
            self.consecutive_api_errors += 1
            limit = self.cfg.abort_after_consecutive_api_errors
            if limit and self.consecutive_api_errors >= limit:
                await self.s.awrite(record)
                raise AnnotateRunError(f"{self.consecutive_api_errors} consecutive requests were rejected (last: {record.error_message}); stopped the run.")
        elif record.status is not Status.failed:
            self.consecutive_api_errors = 0


async def _produce(annotator: _Annotator, todo: asyncio.Queue[ImageEntry], ready: asyncio.Queue[Any]) -> None:
    """Prepare images ahead of the workers (the bounded `ready` queue caps memory), so a free worker sends at once."""
    while True:
        try:
            entry = todo.get_nowait()
        except asyncio.QueueEmpty:
            return
        await ready.put(await annotator.prepare(entry))


async def _work(annotator: _Annotator, ready: asyncio.Queue[Any]) -> None:
    """Annotate prepared images until the stop marker (None)."""
    while True:
        item = await ready.get()
        if item is None:
            return
        await annotator.s.awrite(await annotator.annotate(*item))


async def run_pool(annotator: _Annotator, entries: list[ImageEntry]) -> None:
    """Producers prepare, `concurrency` workers request; returns when every entry has a record (or raises)."""
    cfg = annotator.cfg
    todo: asyncio.Queue[ImageEntry] = asyncio.Queue()
    for entry in entries:
        todo.put_nowait(entry)
    workers = min(cfg.concurrency, len(entries))
    ready: asyncio.Queue[Any] = asyncio.Queue(maxsize=workers + cfg.prepare_workers)

    async def produce_then_stop() -> None:
        async with asyncio.TaskGroup() as producers:
            for _ in range(min(cfg.prepare_workers, len(entries))):
                producers.create_task(_produce(annotator, todo, ready))
        for _ in range(workers):
            await ready.put(None)

    async with asyncio.TaskGroup() as group:
        group.create_task(produce_then_stop())
        for _ in range(workers):
            group.create_task(_work(annotator, ready))


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    """The non-group exceptions inside a (nested) exception group."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def _annotate_all(session: Session, annotator: _Annotator, todo: list[ImageEntry], started: float) -> RunSummary:
    """Run the workers over `todo`; a run-level stop raises its AnnotateError carrying the summary so far."""
    summary = session.summary
    error: AnnotateError | None = None
    try:
        await run_pool(annotator, todo)
    except BaseExceptionGroup as eg:  # a worker raised: the group cancelled the others (in-flight requests included)
        error = next((e for e in _leaves(eg) if isinstance(e, AnnotateError)), None)
        if error is None:
            raise
    summary.requests, summary.retries = annotator.stats.requests, annotator.stats.retries
    if error is None:
        return session.finish(started, len(todo))
    done = sum(session.counts.values())
    summary.remaining += len(todo) - done
    session.finish(started, done)
    summary.aborted = str(error)
    error.summary = summary
    raise error


async def annotate_folder_async(
    images_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None = None,
    concurrency: int | None = None,
    rpm: int | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    client: Any = None,
) -> RunSummary:
    """Annotate every image under images_dir that has no final record in store_path (see the package docstring)."""
    started = time.monotonic()
    cfg = load_annotate_config(config).with_overrides(concurrency=concurrency, rpm=rpm)
    prompt = load_prompt(cfg)
    key = None if client is not None else run_key(api_key, base_url)
    store_path = Path(store_path)
    if batch_state_path(store_path).exists():
        raise AnnotateConfigError(f"{batch_state_path(store_path)} lists batch jobs for this store: collect them first (run again with --batch) or cancel them.")
    session, summary, todo = await start_run(images_dir, store_path, cfg, prompt, base_url, limit, "online")
    owned = False
    try:
        if not todo:
            return session.finish(started, 0)
        client, owned = open_client(cfg, client, key, base_url)
        annotator = _Annotator(session, client, gemini.RateLimiter.from_settings(cfg.gemini))
        session.start_progress(len(todo), progress, "annotate" + (" (offline replay)" if summary.offline else ""))
        return await _annotate_all(session, annotator, todo, started)
    finally:
        session.close()
        if owned:
            await gemini.aclose_quietly(client)
