"""Batch mode against the loopback server: submit, poll, collect (inline and file input), idempotence, cancel."""

from __future__ import annotations

import json

import pytest

from poemlib import annotate as ann
from poemlib.images import file_sha256
from poemlib.samples import reference_by_name
from tests.annotate.helpers import (
    GeminiServer,
    expected_status,
    fast_config,
    lines_per_sha,
    run,
)


def test_batch_inline_submit_poll_collect(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    (few_photos / "broken.jpg").write_bytes(b"not a jpeg")
    sha_cat = file_sha256(few_photos / "cat_chelsea.jpg")
    with GeminiServer(mode="replay", batch_polls_until_done=2, fault_by_digest={sha_cat: "safety"}, first_answer="reference") as server:
        submitted = run(few_photos, store, server, batch=True)
        assert submitted.mode == "batch-submit" and len(submitted.batch_jobs) == 1
        state = ann.read_batch_state(store)
        assert state is not None and state.jobs[0].input == "inline" and len(state.jobs[0].images) == 4
        assert ann.batch_state_path(store) == tmp_path / "store.jsonl.batch.json"
        assert [r.error_kind for r in ann.load_store(store).values()] == ["bad_image"]  # recorded at submit time
        with pytest.raises(ann.AnnotateConfigError, match="collect"):
            run(few_photos, store, server)  # an online run would duplicate the pending work
        pending = run(few_photos, store, server, batch=True)
        assert pending.mode == "batch-pending" and pending.attempted == 0 and "RUNNING" in pending.batch_state
        collected = run(few_photos, store, server, batch=True)
        assert collected.mode == "batch-collect" and collected.attempted == 4
        assert not ann.batch_state_path(store).exists() and list(tmp_path.glob("store.jsonl.batch.*.done.json"))
        records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
        assert records["cat_chelsea.jpg"].error_kind == "safety"
        for name in ("coffee_cup.jpg", "dahlia_flower.jpg", "text_page_scan.jpg"):
            assert records[name].status == expected_status(name) and records[name].source.startswith("batch:batches/")
            assert records[name].annotation == reference_by_name()[name]
        batch_records = [r for r in records.values() if r.source]
        assert collected.cost_usd == pytest.approx(sum(ann.usage_cost(r.usage, ann.AnnotateConfig().prices, batch=True) for r in batch_records), abs=1e-6)
        assert server.stats.requests == 0 and server.stats.batch_requests == 4  # no online calls
        # Re-running now does nothing online for finished images.
        assert run(few_photos, store, server).attempted == 0
        assert all(c == 1 for c in lines_per_sha(store).values())


def test_batch_collect_is_idempotent_after_a_crash(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay", batch_polls_until_done=1) as server:
        run(few_photos, store, server, batch=True)
        state_text = ann.batch_state_path(store).read_text()
        run(few_photos, store, server, batch=True)  # collects
        # Simulate a crash after the records were written but before the state was archived: collect again.
        ann.batch_state_path(store).write_text(state_text)
        again = run(few_photos, store, server, batch=True)
        assert again.mode == "batch-collect" and again.attempted == 0
        assert all(c == 1 for c in lines_per_sha(store).values()) and len(ann.load_store(store)) == 4


def test_batch_file_input_with_wait_and_transient_errors(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    sha = file_sha256(few_photos / "dahlia_flower.jpg")
    config = fast_config(batch=ann.BatchSettings(input="file", poll_interval_s=0.05))
    with GeminiServer(mode="replay", batch_polls_until_done=3, fault_by_digest={sha: "503*1"}) as server:
        summary = run(few_photos, store, server, batch=True, wait=True, config=config)
        assert summary.mode == "batch-collect" and summary.attempted == 4
        assert server.stats.by_endpoint["files.upload.start"] == 1 and server.stats.by_endpoint["files.download"] == 1
        assert not list(tmp_path.glob("*batch-input*")), "the spooled request file is removed after upload"
        records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
        assert records["dahlia_flower.jpg"].error_kind == "server_error"  # per-request error inside the batch
        # transient: the next run (online here) retries it
        again = run(few_photos, store, server, config=config)
        assert again.attempted == 1 and again.ok == 1


def test_batch_auto_switches_to_a_file_when_inline_is_too_big(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    config = fast_config(batch=ann.BatchSettings(input="auto", max_inline_bytes=60_000, poll_interval_s=0.01))
    with GeminiServer(mode="replay", batch_polls_until_done=1) as server:
        summary = run(few_photos, store, server, batch=True, config=config)
        state = ann.read_batch_state(store)
        assert state.jobs[0].input == "file" and summary.batch_jobs
        assert run(few_photos, store, server, batch=True, config=config).attempted == 4


def test_batch_splits_into_several_jobs(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    config = fast_config(batch=ann.BatchSettings(input="inline", max_requests_per_job=3, poll_interval_s=0.01))
    with GeminiServer(mode="replay", batch_polls_until_done=1) as server:
        submitted = run(few_photos, store, server, batch=True, config=config)
        assert len(submitted.batch_jobs) == 2 and [len(j.images) for j in ann.read_batch_state(store).jobs] == [3, 1]
        collected = run(few_photos, store, server, batch=True, config=config)
        assert collected.attempted == 4 and len(ann.load_store(store)) == 4


def test_batch_cancel(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay", batch_polls_until_done=5) as server:
        submitted = run(few_photos, store, server, batch=True)
        cancelled = ann.cancel_batch(store, base_url=server.base_url)
        assert cancelled.mode == "batch-cancel" and not ann.batch_state_path(store).exists()
        assert server.stats.by_endpoint["batches.cancel"] == 1
        assert submitted.batch_jobs == cancelled.batch_jobs
        (archived,) = tmp_path.glob("store.jsonl.batch.*.cancelled.json")
        jobs = json.loads(archived.read_text(encoding="utf-8"))["jobs"]
        assert [(j["name"], j["state"], j["error"], j["collected"]) for j in jobs] == [(submitted.batch_jobs[0], "JOB_STATE_CANCELLED", "cancelled by user", True)]
        assert cancelled.batch_state == f"cancelled; state archived to {archived.name}"
        # nothing recorded: the next run does the images
        assert run(few_photos, store, server).attempted == 4
