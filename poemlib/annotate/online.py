"""The online run: producers prepare photos, `concurrency` workers send them, one conversation per image.

Each image is a small conversation with Gemini: the photo and the instruction, then (when its poem fails 格律 and
`revise_rounds` > 0) revision turns naming the meter's findings (`reviser.Reviser`). An answer that is not JSON or
stops at MAX_TOKENS is asked once more (`ask_recovering`) before it counts as failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
from poemlib.annotate.reviser import Reviser
from poemlib.annotate.revision import needs_revision
from poemlib.annotate.session import Session, start_run
from poemlib.annotate.store import ImageEntry, batch_state_path
from poemlib.annotate.summary import RunSummary
from poemlib.gemini import Outcome
from poemlib.images import BadImageError
from poemlib.schema import AnnotationRecord, Status

log = logging.getLogger(__name__)

RECOVERABLE_KINDS = ("invalid_json", "truncated")


@dataclass
class Turn:
    """One request of a conversation and what its answer amounts to."""

    outcome: Outcome
    attempts: int
    latency_s: float


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
        bigger = int(self.cfg.max_output_tokens * self.cfg.recover_output_factor)
        self.larger_config = generation_config(self.cfg.model_copy(update={"max_output_tokens": bigger}), session.prompt)
        self.recovered_requests = 0
        self.reviser = Reviser(self) if self.cfg.revise_rounds > 0 else None

    async def ask(self, contents: list[Any], gen_config: Any = None) -> Turn:
        """One generate_content with the retry policy, interpreted; a rejected key or model stops the run."""
        started = time.monotonic()
        config = gen_config or self.gen_config

        def request() -> Any:
            return self.client.aio.models.generate_content(model=self.cfg.model, contents=contents, config=config)

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

    async def ask_recovering(self, contents: list[Any]) -> Turn:
        """`ask`, and once more for an answer that is not JSON or stops at MAX_TOKENS (that one with a larger budget)."""
        turn = await self.ask(contents)
        kind = turn.outcome.error_kind
        if kind not in RECOVERABLE_KINDS:
            return turn
        self.recovered_requests += 1
        again = await self.ask(contents, self.larger_config if kind == "truncated" else None)
        usage = turn.outcome.usage + again.outcome.usage  # both answers are billed
        again.outcome.usage = usage
        return Turn(again.outcome, turn.attempts + again.attempts, turn.latency_s + again.latency_s)

    async def prepare(self, entry: ImageEntry) -> tuple[ImageEntry, bytes | None, str | None]:
        """(entry, JPEG to send, None) or (entry, None, why the image is unusable)."""
        async with self.prepare_gate:
            try:
                return entry, await asyncio.to_thread(prepare_for_gemini, entry.files[0], self.cfg, name=entry.paths[0]), None
            except BadImageError as exc:
                return entry, None, str(exc)
            except FileNotFoundError as exc:
                return entry, None, f"{entry.paths[0]}: file disappeared ({exc})"

    async def annotate(self, entry: ImageEntry, jpeg: bytes | None, problem: str | None) -> AnnotationRecord:
        """One prepared image: its conversation (first answer, then revision rounds), as a record; never raises for
        per-image problems."""
        if jpeg is None:
            return self.s.record(entry, Outcome.failed("bad_image", problem or "unusable image"), attempts=0, latency_s=None)
        first_contents = gemini.user_contents(jpeg, self.s.prompt.user)
        pending = self.s.pending.get(entry.sha256)
        if pending is not None and self.reviser is not None:
            return await self.reviser.revise(pending, first_contents)  # resumed: the first answer is on record
        first = await self.ask_recovering(first_contents)
        record = self.s.record(entry, first.outcome, attempts=first.attempts, latency_s=first.latency_s)
        await self._stop_after_repeated_rejections(record)
        if self.reviser is not None and needs_revision(record, self.cfg.revise_rounds):
            return await self.reviser.revise(record, first_contents)
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
    summary.recovered_requests = annotator.recovered_requests
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
    revise: int | None = None,
) -> RunSummary:
    """Annotate every image under images_dir that has no final record in store_path (see the package docstring);
    `revise` overrides the config's revise_rounds."""
    started = time.monotonic()
    cfg = load_annotate_config(config).with_overrides(concurrency=concurrency, rpm=rpm, revise_rounds=revise)
    prompt = load_prompt(cfg)
    key = None if client is not None else run_key(api_key, base_url)
    store_path = Path(store_path)
    if batch_state_path(store_path).exists():
        raise AnnotateConfigError(f"{batch_state_path(store_path)} lists batch jobs for this store: collect them first (run again with --batch) or cancel them.")
    session, summary, todo = await start_run(images_dir, store_path, cfg, prompt, base_url, limit, "online")
    summary.revise_rounds = cfg.revise_rounds
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
