"""Meter checks shared with worker processes give the in-process result, also for store lines checked as read."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from poemlib.clean import clean, meter_pool
from poemlib.clean.meter_result import meter_result
from tests.clean.data import (
    BROKEN,
    CHUNWANG,
    DENG,
    HUANXISHA,
    POLICY,
    SHANXING_TRAD,
    ZAOFA,
    gc,
    run_clean,
    store_line,
)


def test_meter_workers_give_the_same_output(legacy, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(meter_pool, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(meter_pool, "METER_BATCH", 2)
    for dedupe in ("latest", "best"):
        outputs = {}
        for workers in (1, 2, 3):
            rep, out = run_clean(legacy, tmp_path / f"{dedupe}{workers}", dedupe=dedupe, workers=workers)
            assert rep.settings["workers"] == workers
            outputs[workers] = (out.read_bytes(), out.with_name("rejected.jsonl").read_bytes(), rep.counts, rep.meter, rep.duplicate_groups)
        assert outputs[1] == outputs[2] == outputs[3]


def _ok_items() -> list[SimpleNamespace]:
    """Eight ok records (two of each of four poems) standing in for Items, for a MeterQueue alone."""
    poems = [("五言绝句", DENG), ("七言绝句", ZAOFA), ("五言律诗", CHUNWANG), ("五言绝句", BROKEN)] * 2
    return [SimpleNamespace(status="ok", order=(0, i), ptype=t, content=c, title=None) for i, (t, c) in enumerate(poems)]


def test_records_left_after_reading_are_sent_in_the_order_the_output_needs_them(monkeypatch) -> None:
    """A re-annotated image keeps its early place in the output: its late record is batched first once reading ends."""
    monkeypatch.setattr(meter_pool, "METER_BATCH", 2)
    items = _ok_items()
    queue = meter_pool.MeterQueue("pingshui", workers=2)  # one worker, two batches in flight: k0-k3 go out at once
    try:
        for item in items:
            queue.submit(item)  # type: ignore[arg-type]
        keys = [item.order for item in items]
        queue.seal(needed=[keys[i] for i in (0, 7, 1, 2, 6, 3, 4, 5)])
        waiting = [[key for key, _ in queue._batches[index]] for index in queue._queued]  # type: ignore[index]
        assert waiting == [[keys[7], keys[6]], [keys[4], keys[5]]]
        for item in reversed(items):
            assert queue.get(item) == meter_result(item.ptype, item.content, None, "pingshui")  # type: ignore[arg-type]
    finally:
        queue.close()


_AT = "2026-01-01T00:00:00Z"


def _store(tmp_path, name: str, lines: list[str]):
    """An annotate store file of the given lines."""
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")  # lines carry created_at: the default would be "now"
    return path


def test_store_lines_are_checked_while_the_store_is_read(tmp_path, monkeypatch) -> None:
    """Store lines go to the workers as they are read; superseded and re-annotated ones are dropped, output unchanged."""
    monkeypatch.setattr(meter_pool, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(meter_pool, "METER_BATCH", 2)
    sha = [f"{i:064x}" for i in range(6)]
    first = _store(tmp_path, "a.jsonl", [
        store_line(sha[0], "p0.jpg", created_at=_AT, annotation=gc("五言绝句", "残句", BROKEN)),  # superseded by the next line for p0
        store_line(sha[1], "p1.jpg", created_at=_AT, annotation=gc("五言绝句", "登楼", DENG)),
        store_line(sha[0], "p0.jpg", created_at=_AT, annotation=gc("七言绝句", "早发", ZAOFA)),
        store_line(sha[2], "p2.jpg", created_at=_AT, annotation=gc("五言律诗", "春望", CHUNWANG)),
        store_line(sha[3], "p3.jpg", created_at=_AT, annotation=gc("词", "浣溪沙·春恨", HUANXISHA)),
    ])
    second = _store(tmp_path, "b.jsonl", [store_line(sha[1], "p1.jpg", created_at=_AT, annotation=gc("七言绝句", "山行", SHANXING_TRAD))])
    submitted: list[str] = []
    real_submit = meter_pool.MeterQueue.submit
    monkeypatch.setattr(meter_pool.MeterQueue, "submit", lambda self, item: (submitted.append(item.source), real_submit(self, item))[1])
    outputs = {}
    for workers in (1, 2):
        submitted.clear()
        out = tmp_path / f"w{workers}" / "clean.jsonl"
        rep = clean([first, second], out, tmp_path / f"w{workers}" / "report.json", workers=workers, policy=POLICY)
        outputs[workers] = (out.read_bytes(), out.with_name("rejected.jsonl").read_bytes(), rep.counts, rep.meter)
    assert outputs[1] == outputs[2]
    # With a pool, every store line of a.jsonl was offered as read (the superseded one too), in file order.
    assert [s.rsplit(":", 1)[1] for s in submitted if "a.jsonl" in s][:5] == ["1", "2", "3", "4", "5"]
    lines = [json.loads(line) for line in outputs[2][0].splitlines()]
    by_path = {line["image_paths"][0]: line for line in lines}
    assert by_path["p0.jpg"]["annotation"]["poem_title"] == "早发" and by_path["p0.jpg"]["meter"]["form_ok"] is True
    assert by_path["p1.jpg"]["annotation"]["poem_title"] == "山行"  # the re-annotation in b.jsonl wins (latest)
    assert rep.counts.superseded_in_store == 1


def test_default_workers_add_a_worker_per_cpu_to_the_main_process(monkeypatch) -> None:
    """The main process reads and writes alone: one worker per CPU beside it, none on a single CPU, at most 8 in all."""
    for cpus, expected in ((1, 1), (2, 3), (4, 5), (16, 8)):
        monkeypatch.setattr(meter_pool.os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)), raising=False)
        assert meter_pool.default_workers() == expected


def test_repeated_submits_collect_results_and_keep_workers_supplied(monkeypatch) -> None:
    """Records already queued come back through dedupe when a store file ends: those submits still pump the pool."""
    import time

    monkeypatch.setattr(meter_pool, "METER_BATCH", 2)
    items = _ok_items()
    queue = meter_pool.MeterQueue("pingshui", workers=2)  # one worker, two batches in flight
    try:
        for item in items:
            queue.submit(item)  # type: ignore[arg-type]
        assert len(queue._in_flight) == 2 and len(queue._queued) == 2 and not queue._done
        deadline = time.monotonic() + 20
        while queue._queued or queue._in_flight:  # the same records again, as dedupe hands them back
            assert time.monotonic() < deadline, "the pool was never pumped"
            queue.submit(items[0])  # type: ignore[arg-type]
            time.sleep(0.01)
        assert set(queue._done) == {item.order for item in items}
        for item in items:
            assert queue.get(item) == meter_result(item.ptype, item.content, None, "pingshui")  # type: ignore[arg-type]
    finally:
        queue.close()


def test_pool_pipes_hold_a_whole_batch_of_results() -> None:
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("pipe sizes are Linux only")
    queue = meter_pool.MeterQueue("pingshui", workers=2)
    try:
        pool = queue.pool
        for connection in (pool._inqueue._reader, pool._outqueue._reader, pool._outqueue._writer):  # type: ignore[union-attr]
            assert fcntl.fcntl(connection.fileno(), fcntl.F_GETPIPE_SZ) >= meter_pool.PIPE_BYTES
    finally:
        queue.close()
