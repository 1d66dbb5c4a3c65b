"""Batch mode, submission: prepare every image without a final record and submit Batch API job(s)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from poemlib import gemini
from poemlib.annotate.batch_revise import submit_revisions
from poemlib.annotate.batch_state import (
    BatchBuilder,
    BatchJobState,
    BatchState,
    utc_stamp,
    write_state,
)
from poemlib.annotate.client import call_or_raise, open_client, run_key
from poemlib.annotate.config import AnnotateConfig, load_annotate_config
from poemlib.annotate.errors import AnnotateConfigError
from poemlib.annotate.prepare import prepare_for_gemini
from poemlib.annotate.prompt import Prompt, generation_config, load_prompt
from poemlib.annotate.revision import load_revise_prompt
from poemlib.annotate.session import Session, start_run
from poemlib.annotate.store import ImageEntry, batch_state_path
from poemlib.annotate.summary import RunSummary
from poemlib.gemini import Outcome
from poemlib.gemini.responses import enum_name
from poemlib.images import BadImageError


class _Submitter:
    """Packs prepared images into jobs and submits each job as it fills; the state file remembers every job."""

    def __init__(self, session: Session, client: Any, state: BatchState, state_path: Path) -> None:
        self.session = session
        self.cfg: AnnotateConfig = session.cfg
        self.prompt: Prompt = session.prompt
        self.client = client
        self.state = state
        self.state_path = state_path
        self.limiter = gemini.RateLimiter.from_settings(self.cfg.gemini)
        self.stamp = utc_stamp()
        self.gen_config = generation_config(self.cfg, self.prompt)
        self.requested = 0
        store = session.store_path
        spools = count()
        mode = "file" if self.cfg.batch.input == "file" else "inline"
        self.builder = BatchBuilder(self.cfg, self.prompt, mode, lambda: store.with_name(f"{store.name}.batch-input-{self.stamp}-{next(spools):03d}.jsonl"))

    async def _job_source(self, display: str) -> tuple[Any, str | None]:
        """(src for batches.create, uploaded input file name or None): inline requests, or the spool file uploaded."""
        from google.genai import types

        builder = self.builder
        if builder.mode == "inline":
            requests = [
                types.InlinedRequest(contents=gemini.user_contents(jpeg, self.prompt.user), config=self.gen_config, metadata={"image_sha256": e.sha256})
                for e, jpeg in zip(builder.entries, builder.inline)
            ]
            return requests, None
        spool = builder.close_spool()
        assert spool is not None
        upload_config = types.UploadFileConfig(display_name=display, mime_type="application/jsonl")
        uploaded = await call_or_raise(self.cfg, self.limiter, lambda: self.client.aio.files.upload(file=str(spool), config=upload_config), "upload the batch input file")
        return uploaded.name, uploaded.name

    async def flush(self) -> None:
        """Submit what the builder holds as one job and remember it in the state file before anything else."""
        from google.genai import types

        builder = self.builder
        if not builder.entries:
            return
        display = f"poemlib-annotate-{self.stamp}-{len(self.state.jobs):03d}"
        src, input_file = await self._job_source(display)
        job_config = types.CreateBatchJobConfig(display_name=display)
        job = await call_or_raise(self.cfg, self.limiter, lambda: self.client.aio.batches.create(model=self.cfg.model, src=src, config=job_config), "create the batch job")
        images = [{"sha256": e.sha256, "paths": e.paths} for e in builder.entries]
        self.state.jobs.append(
            BatchJobState(
                name=job.name, display_name=display, input=builder.mode, input_file=input_file,  # type: ignore[arg-type]
                submitted_at=datetime.now(UTC), images=images, state=enum_name(job.state) or "JOB_STATE_PENDING",
            )
        )
        write_state(self.state_path, self.state)  # remembered before anything else can fail
        self.session.summary.batch_jobs.append(job.name)
        self.requested += len(builder.entries)
        builder.reset()

    async def add(self, entry: ImageEntry, jpeg: bytes) -> None:
        """Add one image, submitting the current job first when it would overflow."""
        builder = self.builder
        if builder.full_after(jpeg):
            if self.cfg.batch.input == "auto" and builder.mode == "inline" and not self.state.jobs:
                builder.switch_to_file()  # too big for one inline request: this run uses input files
            if builder.full_after(jpeg):
                await self.flush()
        builder.add(entry, jpeg)
        self.session.advance()

    async def submit(self, todo: list[ImageEntry]) -> None:
        """Prepare in windows of a few images; bad images are recorded at once, the rest go into jobs."""
        gate = asyncio.Semaphore(self.cfg.prepare_workers)

        async def prepare(entry: ImageEntry) -> tuple[ImageEntry, bytes | None, str | None]:
            async with gate:
                try:
                    return entry, await asyncio.to_thread(prepare_for_gemini, entry.files[0], self.cfg, name=entry.paths[0]), None
                except (BadImageError, FileNotFoundError) as exc:
                    return entry, None, str(exc)

        window = max(1, self.cfg.prepare_workers * 2)
        for start in range(0, len(todo), window):
            for entry, jpeg, problem in await asyncio.gather(*(prepare(e) for e in todo[start : start + window])):
                if jpeg is None:
                    self.session.write(self.session.record(entry, Outcome.failed("bad_image", problem or "bad image"), attempts=0, latency_s=None))
                else:
                    await self.add(entry, jpeg)
        await self.flush()


async def submit_batch_async(
    images_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    client: Any = None,
    revise: int | None = None,
) -> RunSummary:
    """Prepare every image without a final record and submit Batch API job(s); bad images are recorded at once.
    Images whose revision rounds an earlier run left to do go into a revision job (`revise` overrides revise_rounds)."""
    started = time.monotonic()
    cfg = load_annotate_config(config).with_overrides(revise_rounds=revise)
    prompt = load_prompt(cfg)
    key = None if client is not None else run_key(api_key, base_url)
    store_path = Path(store_path)
    state_path = batch_state_path(store_path)
    if state_path.exists():
        raise AnnotateConfigError(f"{state_path} already lists batch jobs: collect or cancel them before submitting more.")
    session, summary, todo = await start_run(images_dir, store_path, cfg, prompt, base_url, limit, "batch-submit")
    state = BatchState(store=store_path.name, images_dir=str(Path(images_dir).resolve()), model=cfg.model, prompt_version=prompt.version, created_at=datetime.now(UTC))
    owned, submitter = False, None
    try:
        if not todo:
            return session.finish(started, 0)
        client, owned = open_client(cfg, client, key, base_url)
        session.start_progress(len(todo), progress, "prepare batch")
        submitter = _Submitter(session, client, state, state_path)
        # An image whose first answer is on record with revision rounds to do goes into a revision job instead.
        await submitter.submit([e for e in todo if e.sha256 not in session.pending])
        resumed = [({"sha256": e.sha256, "paths": e.paths}, session.pending[e.sha256]) for e in todo if e.sha256 in session.pending]
        if resumed:
            summary.batch_jobs += await submit_revisions(session, client, submitter.limiter, state, state_path, load_revise_prompt(cfg), extra=resumed)
            submitter.requested += sum(len(j.images) for j in state.jobs if j.kind == "revision")
        summary.batch_state = f"submitted {len(state.jobs)} job(s) with {submitter.requested} request(s); run again with --batch to collect"
        summary.requests = len(state.jobs)
        return session.finish(started, submitter.requested + session.counts["failed"])
    finally:
        if submitter is not None:
            submitter.builder.reset()  # no spool file left behind, whatever happened
        session.close()
        if owned:
            await gemini.aclose_quietly(client)
