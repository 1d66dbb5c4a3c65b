"""Meter checks shared with worker processes give the in-process result."""

from __future__ import annotations

from poemlib.clean import meter_pool
from tests.clean.data import run_clean


def test_meter_workers_give_the_same_output(legacy, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(meter_pool, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(meter_pool, "METER_BATCH", 2)
    for dedupe in ("latest", "best"):
        outputs = {}
        for workers in (1, 2):
            rep, out = run_clean(legacy, tmp_path / f"{dedupe}{workers}", dedupe=dedupe, workers=workers)
            assert rep.settings["workers"] == workers
            outputs[workers] = (out.read_bytes(), out.with_name("rejected.jsonl").read_bytes(), rep.counts, rep.meter, rep.duplicate_groups)
        assert outputs[1] == outputs[2]
