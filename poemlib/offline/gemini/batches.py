"""Batch API: jobs from inlined requests or an uploaded JSONL file, answered after a few polls."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from poemlib.offline.gemini.files import FileStore, IdMaker, file_not_found
from poemlib.offline.gemini.wire import (
    Answer,
    ApiError,
    bad_request,
    error_answer,
    get_field,
    now_rfc3339,
    rpc_status,
)

GenerateFn = Callable[[str, Mapping[str, Any]], Answer]  # (model, request) -> the answer, errors included
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
DONE_STATES = ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")


@dataclass
class BatchItem:
    """One request of a job: the request body, or the error its input line already has; metadata or key."""

    request: dict[str, Any] | None
    metadata: Any = None  # inlined requests: echoed back with the response
    key: Any = None  # JSONL lines: echoed back with the response
    error: dict[str, Any] | None = None


@dataclass
class BatchJob:
    """A batch job and, once run, its output and counts."""

    id: str
    model: str
    display_name: str
    items: list[BatchItem]
    source: str  # "inline" | "file"
    create_time: str
    update_time: str
    state: str = "BATCH_STATE_PENDING"
    polls: int = 0
    end_time: str | None = None
    output: dict[str, Any] | None = None
    succeeded: int = 0
    failed: int = 0

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    def finish(self, state: str) -> None:
        """Move to a final state now."""
        now = now_rfc3339()
        self.state, self.end_time, self.update_time = state, now, now


def _file_items(data: bytes) -> list[BatchItem]:
    """The items of a JSONL input file; a line that is not a JSON object becomes that item's error."""
    items: list[BatchItem] = []
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            entry = f"invalid JSON: {exc}"
        if not isinstance(entry, dict):
            reason = entry if isinstance(entry, str) else "not a JSON object"
            items.append(BatchItem(None, error={"code": 3, "message": f"line {lineno}: {reason}"}))
            continue
        items.append(BatchItem(get_field(entry, "request") or {}, key=entry.get("key")))
    return items


def batch_resource(job: BatchJob) -> dict[str, Any]:
    """The job as a long-running operation (metadata, and the response once done)."""
    total = len(job.items)
    if job.state == "BATCH_STATE_SUCCEEDED":
        stats = {"requestCount": str(total), "successfulRequestCount": str(job.succeeded), "failedRequestCount": str(job.failed)}
    else:
        stats = {"requestCount": str(total), "pendingRequestCount": str(total)}
    meta: dict[str, Any] = {
        "@type": BATCH_TYPE,
        "model": job.model,
        "displayName": job.display_name,
        "createTime": job.create_time,
        "updateTime": job.update_time,
        "batchStats": stats,
        "state": job.state,
        "name": job.name,
    }
    if job.end_time:
        meta["endTime"] = job.end_time
    if job.output is not None:
        meta["output"] = job.output
    op: dict[str, Any] = {"name": job.name, "metadata": meta}
    if job.done:
        op["done"] = True
        if job.output is not None:
            op["response"] = {"@type": OUTPUT_TYPE, **job.output}
    return op


class BatchQueue:
    """The server's batch jobs; each is answered by `generate` on the poll that completes it."""

    def __init__(self, files: FileStore, generate: GenerateFn, new_id: IdMaker, polls_until_done: int = 2) -> None:
        self.files = files
        self.generate = generate
        self.new_id = new_id
        self.polls_until_done = int(polls_until_done)
        self.jobs: dict[str, BatchJob] = {}
        self._lock = threading.Lock()

    def _items(self, input_config: Mapping[str, Any]) -> tuple[str, list[BatchItem]]:
        """(source, items) of a job's input config; raises ApiError when it names no input or a missing file."""
        requests = get_field(get_field(input_config, "requests") or {}, "requests")
        if requests is not None:
            return "inline", [BatchItem(get_field(e, "request") or {}, metadata=get_field(e, "metadata")) for e in requests]
        file_name = get_field(input_config, "fileName", "file_name")
        if not file_name:
            raise ApiError(bad_request("* BatchGenerateContentRequest.batch.input_config: input_config is not specified\n"))
        file_id = str(file_name).removeprefix("files/")
        stored = self.files.get(file_id)
        if stored is None:
            raise ApiError(file_not_found(file_id))
        return "file", _file_items(stored.data)

    def create(self, model: str, body: Mapping[str, Any]) -> Answer:
        """`models/{model}:batchGenerateContent`: a new PENDING job."""
        batch = get_field(body, "batch") or {}
        source, items = self._items(get_field(batch, "inputConfig", "input_config") or {})
        if not items:
            raise ApiError(bad_request("* BatchGenerateContentRequest.batch.input_config.requests: requests must not be empty\n"))
        now = now_rfc3339()
        display_name = str(get_field(batch, "displayName", "display_name", default="") or "")
        job = BatchJob(self.new_id(), f"models/{model.removeprefix('models/')}", display_name, items, source, now, now)
        with self._lock:
            self.jobs[job.id] = job
        return Answer(200, batch_resource(job), "ok")

    def job(self, job_id: str) -> BatchJob:
        """The job, or ApiError 404."""
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(error_answer(404, "NOT_FOUND", f"Requested entity was not found. (batches/{job_id})", "not_found"))
        return job

    def get(self, job_id: str) -> Answer:
        """A poll: RUNNING after the first, answered and SUCCEEDED at the `polls_until_done`-th."""
        job = self.job(job_id)
        if not job.done:
            job.polls += 1
            if job.polls >= self.polls_until_done:
                self._run(job)
            elif job.state == "BATCH_STATE_PENDING":
                job.state = "BATCH_STATE_RUNNING"
                job.update_time = now_rfc3339()
        return Answer(200, batch_resource(job), "ok")

    def _result(self, job: BatchJob, item: BatchItem) -> dict[str, Any]:
        """One item's result: its response or a google.rpc.Status error, with its metadata or key."""
        out: dict[str, Any] = {}
        if item.error is not None:
            out["error"] = item.error
        else:
            answer = self.generate(job.model, item.request or {})
            if answer.status == 200 and isinstance(answer.body, dict):
                out["response"] = answer.body
            else:
                out["error"] = rpc_status(answer)
        if job.source == "inline":
            if item.metadata is not None:
                out["metadata"] = item.metadata
        elif item.key is not None:
            out = {"key": item.key, **out}
        return out

    def _run(self, job: BatchJob) -> None:
        """Answer every request of the job; the output is inlined or a generated JSONL file, as the input was."""
        results = [self._result(job, item) for item in job.items]
        job.failed = sum(1 for r in results if "error" in r)
        job.succeeded = len(results) - job.failed
        if job.source == "inline":
            job.output = {"inlinedResponses": {"inlinedResponses": results}}
        else:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results).encode("utf-8")
            file_id = f"batch-{job.id}"
            self.files.store(file_id, data, "application/jsonl", display_name=f"{job.name} responses", source="GENERATED")
            job.output = {"responsesFile": f"files/{file_id}"}
        job.finish("BATCH_STATE_SUCCEEDED")

    def cancel(self, job_id: str) -> Answer:
        """Cancel a job that has not finished."""
        job = self.job(job_id)
        if not job.done:
            job.finish("BATCH_STATE_CANCELLED")
        return Answer(200, {}, "ok")

    def delete(self, job_id: str) -> Answer:
        """Forget a job."""
        self.job(job_id)
        with self._lock:
            self.jobs.pop(job_id, None)
        return Answer(200, {}, "ok")

    def listing(self, query: Mapping[str, str]) -> Answer:
        """A page of jobs, newest first (pageSize, pageToken)."""
        jobs = sorted(self.jobs.values(), key=lambda j: j.create_time, reverse=True)
        try:
            size = max(1, min(int(query.get("pageSize") or 50), 1000))
            start = int(query.get("pageToken") or 0)
        except ValueError:
            return bad_request("Invalid page token or size.")
        body: dict[str, Any] = {"operations": [batch_resource(j) for j in jobs[start : start + size]]}
        if start + size < len(jobs):
            body["nextPageToken"] = str(start + size)
        return Answer(200, body, "ok")
