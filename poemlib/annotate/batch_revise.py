"""Batch mode, revision: the collected poems that fail 格律 go out as a follow-up job (one round each), and its
answers become the next round of their records.

A follow-up job is remembered in the same state file (kind 'revision', each image with the round it asks for);
collecting it skips an image whose record already holds that round, so a crash while collecting writes nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poemlib import gemini
from poemlib.annotate.batch_state import (
    BatchJobState,
    BatchState,
    utc_stamp,
    write_state,
)
from poemlib.annotate.client import call_or_raise
from poemlib.annotate.prepare import prepare_for_gemini
from poemlib.annotate.prompt import generation_config
from poemlib.annotate.revision import RevisePrompt, needs_revision
from poemlib.annotate.rounds import (
    continued_contents,
    first_round_of,
    make_round,
    with_rounds,
)
from poemlib.annotate.session import Session
from poemlib.annotate.store import load_store
from poemlib.gemini import Outcome
from poemlib.gemini.responses import enum_name
from poemlib.images import BadImageError
from poemlib.schema import AnnotationRecord


def _images_to_revise(session: Session, state: BatchState) -> list[tuple[dict[str, Any], AnnotationRecord]]:
    """Images of the state's jobs whose current record still needs a round (none while a job of theirs is pending)."""
    waiting = {img["sha256"] for job in state.jobs if not job.collected for img in job.images}
    existing = load_store(session.store_path)
    seen: set[str] = set()
    out = []
    for job in state.jobs:
        for image in job.images:
            sha = image["sha256"]
            record = existing.get(sha)
            if sha in seen or sha in waiting or record is None:
                continue
            seen.add(sha)
            if needs_revision(record, session.cfg.revise_rounds):
                out.append(({"sha256": sha, "paths": list(image["paths"])}, record))
    return out


async def _request(session: Session, images_dir: Path, image: dict[str, Any], record: AnnotationRecord, prompt: RevisePrompt) -> Any:
    """The inlined request of an image's next round, or None (photo gone, or nothing left to name)."""
    from google.genai import types

    try:
        jpeg = await asyncio.to_thread(prepare_for_gemini, images_dir / image["paths"][0], session.cfg, name=image["paths"][0])
    except (BadImageError, FileNotFoundError):
        return None
    first = gemini.user_contents(jpeg, session.prompt.user)
    contents = continued_contents(first, [first_round_of(record), *record.revisions], prompt)
    if contents is None:
        return None
    config = generation_config(session.cfg, session.prompt)
    return types.InlinedRequest(contents=contents, config=config, metadata={"image_sha256": image["sha256"]})


async def submit_revisions(
    session: Session,
    client: Any,
    limiter: gemini.RateLimiter,
    state: BatchState,
    state_path: Path,
    prompt: RevisePrompt,
    extra: list[tuple[dict[str, Any], AnnotationRecord]] | None = None,
) -> list[str]:
    """Submit follow-up job(s) with the next round of every collected poem failing 格律 (and of `extra`: images
    whose rounds an earlier run left to do); their names."""
    from google.genai import types

    cfg = session.cfg
    todo = [*(extra or []), *_images_to_revise(session, state)]
    requests, images, size = [], [], 0
    names: list[str] = []

    async def flush() -> None:
        nonlocal requests, images, size
        if not requests:
            return
        display = f"poemlib-revise-{utc_stamp()}-{len(state.jobs):03d}"
        job = await call_or_raise(
            cfg, limiter, lambda: client.aio.batches.create(model=cfg.model, src=requests, config=types.CreateBatchJobConfig(display_name=display)), "create the revision batch job"
        )
        state.jobs.append(
            BatchJobState(
                name=job.name, display_name=display, input="inline", submitted_at=datetime.now(UTC), images=images,
                state=enum_name(job.state) or "JOB_STATE_PENDING", kind="revision",
            )
        )
        write_state(state_path, state)  # remembered before anything else can fail
        names.append(job.name)
        requests, images, size = [], [], 0

    for image, record in todo:
        request = await _request(session, Path(state.images_dir), image, record, prompt)
        if request is None:
            continue
        request_size = sum(len(p.inline_data.data) * 4 // 3 if p.inline_data else len(p.text or "") * 3 for c in request.contents for p in c.parts) + 4096
        if requests and (size + request_size > cfg.batch.max_inline_bytes or len(requests) >= cfg.batch.max_requests_per_job):
            await flush()
        requests.append(request)
        images.append({**image, "round": len(record.revisions) + 1})
        size += request_size
    await flush()
    return names


def collect_revisions(session: Session, job_state: BatchJobState, answers: dict[str, tuple[Outcome, str]], prompt_version: str) -> int:
    """Write each answered round as its record's next round (skipping rounds already on record); records written."""
    existing = load_store(session.store_path)
    written = 0
    for image in job_state.images:
        sha, number = image["sha256"], int(image["round"])
        record = existing.get(sha)
        if record is None or len(record.revisions) >= number or sha not in answers:
            continue
        outcome, _source = answers[sha]
        new_round = make_round(number, outcome, attempts=1, latency_s=None, prompt_version=prompt_version)
        updated = with_rounds(record, first_round_of(record), [*record.revisions, new_round], rounds=session.cfg.revise_rounds, prompt_version=prompt_version)
        session.seed_usage([record])
        session.write(updated.model_copy(update={"source": f"batch:{job_state.name}"}), batch=True, final=False)
        session.summary.revision_requests += 1
        written += 1
    return written
