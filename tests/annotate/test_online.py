"""Online runs in replay through the real google-genai SDK: results, resume, duplicates, limits, interruption."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.gemini import peak_in_window
from poemlib.images import file_sha256
from poemlib.samples import reference_by_name, sample_images
from poemlib.schema import Status
from tests.annotate.helpers import GeminiServer, fast_config, lines_per_sha, run


def test_replay_samples_end_to_end_and_rerun_requests_nothing(tmp_path, gemini_replay_server) -> None:
    server = gemini_replay_server
    store = tmp_path / "store.jsonl"
    summary = run(SAMPLE_DIR, store, server)
    refs = reference_by_name()
    n = len(sample_images())
    assert summary.images_total == n and summary.attempted == n and summary.failed == 0
    assert summary.ok + summary.unfit == n and summary.unfit == sum(1 for a in refs.values() if not a.create_condition)
    assert server.stats.requests == n and summary.requests == n
    records = ann.load_store(store)
    for record in records.values():
        name = record.image_paths[0]
        assert record.annotation == refs[name], name  # the SDK path delivers the replayed annotation intact
        assert record.prompt_version == ann.load_prompt().version and record.model == "gemini-2.5-pro"
        assert record.usage.prompt_tokens > 0 and record.usage.thinking_tokens > 0
        if record.status is Status.unfit:
            assert record.annotation.poem_content  # the reason is kept
    assert sum(r.usage.cached_tokens for r in records.values()) > 0  # the fixed system prefix is cache-friendly
    # cost = sum of per-record costs, and the cost table agrees
    expected = sum(ann.usage_cost(r.usage, ann.AnnotateConfig().prices) for r in records.values())
    assert summary.cost_usd == pytest.approx(expected, abs=1e-6)
    assert float(ann.cost_frame(records.values()).iloc[-1]["usd"]) == pytest.approx(expected, abs=1e-5)
    assert {"ok", "unfit", "failed", "cost estimate (USD)", "images / min"} <= set(summary.to_frame()["metric"])
    # re-run: nothing left to do, no request
    again = run(SAMPLE_DIR, store, server)
    assert again.skipped_done == n and again.attempted == 0 and server.stats.requests == n
    assert all(c == 1 for c in lines_per_sha(store).values())


def test_duplicate_bytes_are_requested_once_with_every_path(tmp_path, gemini_replay_server) -> None:
    server = gemini_replay_server
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "cat_chelsea.jpg", folder / "a.jpg")
    shutil.copy(SAMPLE_DIR / "cat_chelsea.jpg", folder / "sub" / "b.jpg")
    store = tmp_path / "store.jsonl"
    summary = run(folder, store, server)
    assert summary.files_found == 2 and summary.images_total == 1 and summary.duplicate_files == 1
    assert server.stats.requests == 1
    (record,) = ann.load_store(store).values()
    assert record.image_paths == ["a.jpg", "sub/b.jpg"] and record.status is Status.ok
    # A third copy later: no request, the record is re-appended with the new path (readers keep the last line).
    shutil.copy(SAMPLE_DIR / "cat_chelsea.jpg", folder / "c.jpg")
    again = run(folder, store, server)
    assert server.stats.requests == 1 and again.paths_added == 1
    assert ann.load_store(store)[record.image_sha256].image_paths == ["a.jpg", "sub/b.jpg", "c.jpg"]


def test_images_are_never_modified_or_moved(few_photos, tmp_path, gemini_replay_server) -> None:
    before = {p.name: (file_sha256(p), p.stat().st_mtime_ns) for p in few_photos.iterdir()}
    run(few_photos, tmp_path / "store.jsonl", gemini_replay_server)
    assert {p.name: (file_sha256(p), p.stat().st_mtime_ns) for p in few_photos.iterdir()} == before


def test_limit_then_resume(tmp_path, gemini_replay_server) -> None:
    store = tmp_path / "store.jsonl"
    first = run(SAMPLE_DIR, store, gemini_replay_server, limit=5)
    n = len(sample_images())
    assert first.attempted == 5 and first.remaining == n - 5 and len(ann.load_store(store)) == 5
    second = run(SAMPLE_DIR, store, gemini_replay_server)
    assert second.skipped_done == 5 and second.attempted == n - 5
    assert gemini_replay_server.stats.requests == n and all(c == 1 for c in lines_per_sha(store).values())


def test_torn_last_line_is_repaired_and_its_image_redone(few_photos, tmp_path, gemini_replay_server) -> None:
    store = tmp_path / "store.jsonl"
    run(few_photos, store, gemini_replay_server)
    data = store.read_bytes().splitlines(keepends=True)
    store.write_bytes(b"".join(data[:-1]) + data[-1][: len(data[-1]) // 2])  # crash mid-write of the last record
    assert len(ann.load_store(store)) == 3  # the reader skips the torn line
    again = run(few_photos, store, gemini_replay_server)
    assert again.attempted == 1 and gemini_replay_server.stats.requests == 5
    assert len(ann.load_store(store)) == 4 and all(c == 1 for c in lines_per_sha(store).values())


def test_sync_entry_point_works_inside_a_running_event_loop(few_photos, tmp_path, gemini_replay_server) -> None:
    async def notebook_cell():  # what Jupyter does: a loop is already running
        return run(few_photos, tmp_path / "store.jsonl", gemini_replay_server)

    assert asyncio.run(notebook_cell()).attempted == 4


def test_interrupting_a_notebook_run_stops_it(tmp_path) -> None:
    import _thread
    import threading

    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay", latency_s=0.5) as server:

        async def notebook_cell():
            return run(SAMPLE_DIR, store, server, config=fast_config(concurrency=2))

        def press_stop_after_two_records() -> None:  # Jupyter's stop button: SIGINT → KeyboardInterrupt
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not store.exists() or store.read_bytes().count(b"\n") < 2):
                time.sleep(0.01)
            _thread.interrupt_main()

        timer = threading.Thread(target=press_stop_after_two_records, daemon=True)
        loop = asyncio.new_event_loop()  # like ipykernel's loop: no asyncio.run SIGINT handler in the way
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(notebook_cell())
        finally:
            loop.close()
        seen = server.stats.requests
        time.sleep(1.2)
        assert server.stats.requests == seen < len(sample_images())  # nothing keeps running in the background
    done = ann.load_store(store)
    assert 0 < len(done) < len(sample_images())  # what finished is kept; the next run resumes
    assert all(c == 1 for c in lines_per_sha(store).values())


def test_rpm_and_concurrency_are_respected_end_to_end(tmp_path, few_photos) -> None:
    with GeminiServer(mode="replay", latency_s=0.1) as server:
        run(few_photos, tmp_path / "warm.jsonl", server)  # warm the SDK up: cold-start delays are not what is tested
        server.reset_stats()
        # The per-minute limiter scaled down to a 1.5 s window so the test takes seconds; the margin stays at the
        # shipped 0.6 s, the slack a loaded machine needs between taking a slot and the request reaching the server.
        config = fast_config(rpm=6, rate_window_s=1.5, rate_margin_s=0.6, concurrency=4)
        started = time.monotonic()
        summary = run(SAMPLE_DIR, tmp_path / "store.jsonl", server, config=config)
        assert summary.attempted == len(sample_images())
        assert peak_in_window(server.stats.request_times, 1.5) <= 6
        assert time.monotonic() - started >= 2 * 1.5  # 16 requests at 6 per window need two full windows of waiting
        assert server.stats.peak_concurrency <= 4


def test_concurrency_overlaps_requests(tmp_path, few_photos) -> None:
    with GeminiServer(mode="replay", latency_s=0.3) as server:
        run(few_photos, tmp_path / "warm.jsonl", server)  # warm the SDK up: cold-start delays are not what is tested
        server.reset_stats()
        run(SAMPLE_DIR, tmp_path / "store.jsonl", server, config=fast_config(concurrency=8))
        # eight requests in flight at once at the server (speed itself is measured in benchmarks/annotate_throughput.py)
        assert server.stats.peak_concurrency == 8
