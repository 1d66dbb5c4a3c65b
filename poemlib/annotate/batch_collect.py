"""Batch mode, collection and cancellation: poll the store's jobs, write finished answers into the store once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poemlib import gemini
from poemlib.annotate.batch_revise import collect_revisions, submit_revisions
from poemlib.annotate.batch_state import (
    BatchJobState,
    BatchState,
    read_batch_state,
    utc_stamp,
    write_state,
)
from poemlib.annotate.client import call_or_raise, open_client, run_key
from poemlib.annotate.config import AnnotateConfig, load_annotate_config
from poemlib.annotate.errors import AnnotateConfigError, AnnotateRunError
from poemlib.annotate.prompt import Prompt, load_prompt
from poemlib.annotate.revision import load_revise_prompt
from poemlib.annotate.session import Session, new_summary
from poemlib.annotate.store import ImageEntry, batch_state_path, is_final, load_store
from poemlib.annotate.summary import RunSummary
from poemlib.gemini import Outcome
from poemlib.gemini.responses import enum_name

log = logging.getLogger(__name__)


@dataclass
class JobError:
    """A per-request error inside a batch job (google.rpc.Status)."""

    code: int | None
    message: str | None


def job_error_kind(code: int | None) -> str:
    """google.rpc.Code of a per-request batch error → our error kind."""
    return {8: "rate_limited", 4: "timeout", 14: "server_error", 13: "server_error", 2: "server_error"}.get(int(code or 0), "api_error")


def _inline_answers(dest: Any, job_state: BatchJobState) -> dict[str, tuple[Any, Any]]:
    """sha → (response, error) from a job's inlined responses (matched by metadata, else by position)."""
    by_sha: dict[str, tuple[Any, Any]] = {}
    for index, item in enumerate(dest.inlined_responses):
        sha = (item.metadata or {}).get("image_sha256") or (job_state.images[index]["sha256"] if index < len(job_state.images) else None)
        if sha:
            by_sha[sha] = (item.response, item.error)
    return by_sha


def _file_answers(data: bytes) -> dict[str, tuple[Any, Any]]:
    """sha → (response, error) from a batch output file (JSONL keyed by image sha256)."""
    from google.genai import types

    by_sha: dict[str, tuple[Any, Any]] = {}
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        sha = obj.get("key")
        if not sha:
            continue
        response = types.GenerateContentResponse.model_validate(obj["response"]) if obj.get("response") else None
        error = obj.get("error")
        by_sha[sha] = (response, JobError(error.get("code"), error.get("message")) if error else None)
    return by_sha


def _outcome(response: Any, error: Any) -> Outcome:
    """One image's outcome from its batch response or per-request error."""
    if response is not None:
        return gemini.interpret_response(response)
    if error is not None:
        code = getattr(error, "code", None)
        return Outcome.failed(job_error_kind(code), f"batch request error {code}: {getattr(error, 'message', None)}")
    return Outcome.failed("server_error", "the batch output has no response for this image")


async def _collect_job(session: Session, client: Any, limiter: gemini.RateLimiter, job_state: BatchJobState, job: Any) -> int:
    """Turn one finished job's responses into records; skips images that already have a final record."""
    cfg = session.cfg
    dest = getattr(job, "dest", None)
    by_sha: dict[str, tuple[Any, Any]] = {}
    if dest is not None and dest.inlined_responses is not None:
        by_sha = _inline_answers(dest, job_state)
    elif dest is not None and dest.file_name:
        data = await call_or_raise(cfg, limiter, lambda: client.aio.files.download(file=dest.file_name), f"download {dest.file_name}")
        by_sha = _file_answers(bytes(data))
    if job_state.kind == "revision":
        answers = {image["sha256"]: (_outcome(*by_sha.get(image["sha256"], (None, None))), job_state.name) for image in job_state.images}
        return collect_revisions(session, job_state, answers, revise_version(session))
    existing = load_store(session.store_path)
    written = 0
    for image in job_state.images:
        sha = image["sha256"]
        if is_final(existing.get(sha), cfg.retry_on_rerun):
            continue  # collected before a crash, or annotated by an online run meanwhile
        outcome = _outcome(*by_sha.get(sha, (None, None)))
        session.write(session.record(ImageEntry(sha, list(image["paths"]), []), outcome, attempts=1, latency_s=None, source=f"batch:{job_state.name}"), batch=True)
        written += 1
    return written


def revise_version(session: Session) -> str:
    """The revision prompt version of this run's config (records of a revision job carry it)."""
    return load_revise_prompt(session.cfg).version


async def _poll_once(session: Session, client: Any, limiter: gemini.RateLimiter, state: BatchState, state_path: Path) -> tuple[int, int]:
    """Poll every uncollected job once and collect the finished ones: (records written, jobs still pending)."""
    written, pending = 0, 0
    for job_state in state.jobs:
        if job_state.collected:
            continue
        job = await call_or_raise(session.cfg, limiter, lambda name=job_state.name: client.aio.batches.get(name=name), f"poll batch job {job_state.name}")
        session.summary.requests += 1
        job_state.state = enum_name(job.state) or job_state.state
        if not job.done:
            pending += 1
            continue
        if job_state.state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
            written += await _collect_job(session, client, limiter, job_state, job)
        else:
            job_state.error = f"{job_state.state}: {getattr(getattr(job, 'error', None), 'message', None) or 'no detail'}"
            log.warning("batch job %s ended %s; its images stay unannotated and a later run submits them again", job_state.name, job_state.state)
        job_state.collected = True
        write_state(state_path, state)
    return written, pending


def _conclude(summary: RunSummary, state: BatchState, state_path: Path, store_path: Path) -> None:
    """Archive the state when every job is collected, else save the latest job states and say what is still running."""
    if all(j.collected for j in state.jobs):
        archive = state_path.with_name(f"{store_path.name}.batch.{utc_stamp()}.done.json")
        os.replace(state_path, archive)
        ended = [j for j in state.jobs if j.error]
        summary.batch_state = f"collected {len(state.jobs)} job(s)" + (f"; {len(ended)} ended without results: {', '.join(j.error or '' for j in ended)}" if ended else "") + f" (state archived to {archive.name})"
        return
    write_state(state_path, state)  # latest job states, for whoever looks at the file
    summary.mode = "batch-pending"
    waiting = [f"{j.name} {j.state}" for j in state.jobs if not j.collected]
    summary.batch_state = "still running: " + ", ".join(waiting) + "; run again with --batch to collect"


def _pending_state(store_path: Path) -> BatchState:
    state = read_batch_state(store_path)
    if state is None:
        raise AnnotateConfigError(f"no pending batch for {store_path} ({batch_state_path(store_path)} not found)")
    return state


async def collect_batch_async(
    store_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    wait: bool = False,
    poll_interval_s: float | None = None,
    progress: bool = True,
    client: Any = None,
    revise: int | None = None,
) -> RunSummary:
    """Poll the store's batch jobs; write the answers of finished ones into the store (idempotent, crash-safe).

    With revise_rounds > 0 (`revise` overrides it), once no job is pending the poems failing 格律 go out as a
    follow-up job, collected like the others (with `wait`, in this same call)."""
    started = time.monotonic()
    cfg = load_annotate_config(config).with_overrides(revise_rounds=revise)
    prompt = load_prompt(cfg)
    store_path = Path(store_path)
    state_path = batch_state_path(store_path)
    state = _pending_state(store_path)
    key = None if client is not None else run_key(api_key, base_url)
    summary = new_summary("batch-collect", store_path, base_url, state.model, state.prompt_version, state.images_dir)
    summary.batch_jobs = [j.name for j in state.jobs]
    summary.revise_rounds = cfg.revise_rounds
    if state.prompt_version != prompt.version:
        log.warning("batch was submitted with prompt %s; the current prompt is %s (records keep the submitted version)", state.prompt_version, prompt.version)
    session = Session(cfg.model_copy(update={"model": state.model}), Prompt(prompt.system, prompt.user, state.prompt_version), store_path, summary)
    limiter = gemini.RateLimiter.from_settings(cfg.gemini)
    interval = cfg.batch.poll_interval_s if poll_interval_s is None else poll_interval_s
    written, polls, owned = 0, 0, False
    session.open()
    try:
        client, owned = open_client(cfg, client, key, base_url)
        while True:
            new, pending = await _poll_once(session, client, limiter, state, state_path)
            written += new
            if not pending and cfg.revise_rounds > 0:
                follow_ups = await submit_revisions(session, client, limiter, state, state_path, load_revise_prompt(cfg))
                summary.batch_jobs += follow_ups
                pending = len(follow_ups)
            if not pending or not wait:
                break
            await asyncio.sleep(min(interval, 0.5 * 2**polls))  # quick first polls, then every poll_interval_s
            polls += 1
        _conclude(summary, state, state_path, store_path)
        return session.finish(started, written)
    finally:
        session.close()
        if owned:
            await gemini.aclose_quietly(client)


async def _cancel_jobs(cfg: AnnotateConfig, client: Any, state: BatchState) -> None:
    """Cancel every uncollected job; a job that cannot be cancelled (e.g. gone) is forgotten anyway."""
    limiter = gemini.RateLimiter.from_settings(cfg.gemini)
    for job_state in state.jobs:
        if job_state.collected:
            continue
        try:
            await call_or_raise(cfg, limiter, lambda name=job_state.name: client.aio.batches.cancel(name=name), f"cancel {job_state.name}")
            job_state.error = "cancelled by user"
        except AnnotateRunError as exc:
            log.warning("%s", exc)
            job_state.error = f"cancel failed, forgotten: {exc}"
        job_state.state, job_state.collected = "JOB_STATE_CANCELLED", True


async def cancel_batch_async(
    store_path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | AnnotateConfig | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    client: Any = None,
) -> RunSummary:
    """Cancel the store's uncollected batch jobs and archive the state (their images stay unannotated)."""
    started = time.monotonic()
    cfg = load_annotate_config(config)
    store_path = Path(store_path)
    state = read_batch_state(store_path)
    if state is None:
        raise AnnotateConfigError(f"no pending batch for {store_path}")
    key = None if client is not None else run_key(api_key, base_url)
    client, owned = open_client(cfg, client, key, base_url)
    try:
        await _cancel_jobs(cfg, client, state)
        state_path = batch_state_path(store_path)
        archive = state_path.with_name(f"{store_path.name}.batch.{utc_stamp()}.cancelled.json")
        write_state(state_path, state)
        os.replace(state_path, archive)
    finally:
        if owned:
            await gemini.aclose_quietly(client)
    summary = new_summary("batch-cancel", store_path, base_url, state.model, state.prompt_version)
    summary.batch_jobs = [j.name for j in state.jobs]
    summary.batch_state = f"cancelled; state archived to {archive.name}"
    summary.wall_s = time.monotonic() - started
    return summary
