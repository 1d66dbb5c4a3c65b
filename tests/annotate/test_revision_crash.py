"""Exactly-once through revisions: the CLI is SIGKILLed while revision rounds are in flight, then re-run.

Every image ends with one final record, no round that was on disk before the kill is sent again (the loopback
server's request counts and revision log survive the kill: the server lives in the test process), and the cost
table's revision tokens equal the sum over the stored rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from poemlib import annotate as ann
from poemlib.config import PROJECT_ROOT
from poemlib.meter import check_annotation
from poemlib.offline.gemini import GeminiServer
from poemlib.samples import sample_images
from poemlib.schema import AnnotationRecord
from tests.annotate.helpers import sigkill_when


def round_zero_lines(store: Path) -> int:
    """Complete store lines that hold a first answer awaiting revision."""
    try:
        lines = store.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if b'"first_answer"' in line and b'"revisions": []' in line.replace(b'"revisions":[]', b'"revisions": []'))


def first_answer_requests(server: GeminiServer) -> Counter[str]:
    """Per image identity: model calls that were not revision requests."""
    revisions = Counter(entry["identity"] for entry in server.stats.revisions)
    return Counter({digest: n - revisions[digest] for digest, n in server.stats.by_digest.items()})


def test_sigkill_during_revisions_then_rerun_sends_no_finished_round_again(tmp_path) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store.jsonl"
    folder.mkdir()
    for photo in sample_images():
        shutil.copy(photo, folder / photo.name)
    env = {**os.environ, "GEMINI_API_KEY": "offline-crash-test", "PYTHONPATH": str(PROJECT_ROOT)}
    with GeminiServer(mode="replay", latency_s=0.3) as server:
        command = [sys.executable, "-m", "poemlib.cli", "annotate", str(folder), "--out", str(store), "--base-url", server.base_url]
        command += ["--concurrency", "4", "--rpm", "100000", "--no-progress", "--revise", "2"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
        sigkill_when(proc, lambda: round_zero_lines(store) >= 2, timeout_s=90, waiting_for="two first answers awaiting revision")
        time.sleep(0.8)  # let the server answer the orphaned in-flight requests
        before = ann.load_store(store)
        rounds_before = {sha: len(r.revisions) for sha, r in before.items()}
        firsts_before, log_before = first_answer_requests(server), len(server.stats.revisions)
        assert any(not ann.is_final(r, revise_rounds=2) for r in before.values()), "killed with revision rounds still to do"

        rerun = ann.annotate_folder(folder, store, base_url=server.base_url, concurrency=4, rpm=100000, progress=False, revise=2)
        firsts_after, rerun_log = first_answer_requests(server), server.stats.revisions[log_before:]

    lines = [AnnotationRecord.model_validate(json.loads(line)) for line in store.read_text(encoding="utf-8").splitlines()]
    final_lines = Counter(r.image_sha256 for r in lines if ann.is_final(r, revise_rounds=2))
    records = ann.load_store(store)
    assert len(records) == len(sample_images()) and all(n == 1 for n in final_lines.values()) and set(final_lines) == set(records)
    for sha, record in records.items():
        assert ann.is_final(record, revise_rounds=2)
        if sha in before:
            assert firsts_after[sha] == firsts_before[sha], f"{sha[:12]}: first answer asked again after it was stored"
        if record.status.value == "ok":
            assert check_annotation(record.annotation).ok and 1 <= len(record.revisions) <= 2
    sent_again = [(e["identity"], e["round"]) for e in rerun_log if e["round"] <= rounds_before.get(e["identity"], 0)]
    assert sent_again == [], "a finished round was sent again"
    assert len({(e["identity"], e["round"]) for e in rerun_log}) == len(rerun_log)
    assert rerun.revisions_resumed == sum(1 for r in before.values() if not ann.is_final(r, revise_rounds=2) and r.status.value == "ok")
    costs = ann.cost_frame(records.values()).set_index("item")
    per_round = sum(rnd.usage.total_tokens for r in records.values() for rnd in r.revisions)
    assert costs.loc["total", "revision_tokens"] == per_round > 0
