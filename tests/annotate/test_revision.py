"""Revision turns against the loopback server: drafts first, the reference once every violation is named.

The server answers a fit sample photo with our flawed draft and gives the reference back only to a revision message
that names every violation the checker reports (rule, character, 第N句); a message naming none gets the draft again.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.images import file_sha256
from poemlib.meter import check_annotation
from poemlib.samples import draft_by_name, reference_by_name, sample_images
from poemlib.schema import REVISION_FIELDS, Status
from tests.annotate.helpers import GeminiServer, fast_config, lines_per_sha, run

DRAFTS, REFS = draft_by_name(), reference_by_name()
FIT = sorted(name for name, ref in REFS.items() if ref.create_condition)


def test_sample_photos_first_answers_fail_then_every_poem_passes_within_two_rounds(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay") as server:
        summary = run(SAMPLE_DIR, store, server, revise=2)
        log = list(server.stats.revisions)
    records = ann.load_store(store)
    frame = ann.revision_frame(records).set_index("image")
    assert sorted(frame.index) == FIT
    assert not frame["first_ok"].any() and frame["final_ok"].all() and frame["rounds"].between(1, 2).all()
    for name in FIT:
        record = records[file_sha256(SAMPLE_DIR / name)]
        assert record.first_answer.annotation == DRAFTS[name] and record.annotation == REFS[name]
        assert record.revise_prompt_version == ann.load_revise_prompt(fast_config()).version and record.revise_rounds == 2
        assert record.usage == record.first_answer.usage + sum((r.usage for r in record.revisions), type(record.usage)())
    # the server's log: every revision message named every violation the checker reported on the draft
    assert len(log) == len(FIT) and all(entry["missing"] == [] and entry["answer"] == "reference" for entry in log)
    for entry in log:
        name = next(n for n in FIT if file_sha256(SAMPLE_DIR / n) == entry["identity"])
        for v in check_annotation(DRAFTS[name]).violations:
            assert f"第{v.line}句" in entry["message"] and v.rule in entry["message"] and v.char in entry["message"]
    assert summary.revision_requests == len(FIT) and summary.revised == summary.revised_passing == len(FIT)
    costs = ann.cost_frame(records.values()).set_index("item")
    assert costs.loc["total", "revision_tokens"] == sum(r.usage.total_tokens for rec in records.values() for r in rec.revisions) > 0
    assert costs.loc["total", "tokens"] == costs.loc["total", "first_tokens"] + costs.loc["total", "revision_tokens"]


def test_a_message_naming_no_violation_gets_the_draft_twice_and_the_record_says_so(tmp_path) -> None:
    silent = tmp_path / "silent.md"
    silent.write_text("请再检查一遍格律，改好后只输出同样结构的 JSON 对象。\n", encoding="utf-8")
    cfg = fast_config()
    cfg = cfg.model_copy(update={"prompts": cfg.prompts.model_copy(update={"revise": str(silent)})})
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "coffee_cup.jpg").write_bytes((SAMPLE_DIR / "coffee_cup.jpg").read_bytes())
    with GeminiServer(mode="replay") as server:
        run(folder, tmp_path / "store.jsonl", server, config=cfg, revise=2)
        assert [e["answer"] for e in server.stats.revisions] == ["draft", "draft"] and server.stats.requests == 3
    [record] = ann.load_store(tmp_path / "store.jsonl").values()
    assert record.annotation == DRAFTS["coffee_cup.jpg"] and len(record.revisions) == 2
    assert not ann.needs_revision(record, 2) and ann.needs_revision(record, 3)  # a rerun with N=3 would go on


def test_revise_zero_keeps_todays_store_format_and_a_higher_n_revises_only_what_fails(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    with GeminiServer(mode="replay") as server:
        run(SAMPLE_DIR, store, server, revise=0)
        assert server.stats.requests == len(sample_images()) and server.stats.revisions == []
        lines = [json.loads(line) for line in store.read_text(encoding="utf-8").splitlines()]
        assert all(not set(REVISION_FIELDS) & set(line) for line in lines)  # the format before revisions
        rerun = run(SAMPLE_DIR, store, server, revise=1)
        assert server.stats.requests == len(sample_images()) + len(FIT)  # one revision each, no first answer again
        assert Counter(e["round"] for e in server.stats.revisions) == {1: len(FIT)}
        assert rerun.revisions_resumed == len(FIT) and rerun.skipped_done == len(sample_images()) - len(FIT)
        again = run(SAMPLE_DIR, store, server, revise=2)
        assert again.attempted == 0 and server.stats.requests == len(sample_images()) + len(FIT)
    per_sha = lines_per_sha(store)
    for name in FIT:
        assert per_sha[file_sha256(SAMPLE_DIR / name)] == 3  # first answer, round 0 kept, the passing round
    assert all(r.annotation == REFS[next(n for n in REFS if file_sha256(SAMPLE_DIR / n) == s)] for s, r in ann.load_store(store).items())


@pytest.mark.parametrize(
    ("rule", "status", "kind", "requests"),
    [("non_json*1", Status.ok, None, 2), ("max_tokens*1", Status.ok, None, 2), ("non_json*2", Status.failed, "invalid_json", 2), ("max_tokens*2", Status.failed, "truncated", 2)],
)
def test_an_unreadable_or_truncated_answer_is_asked_once_more(tmp_path, rule, status, kind, requests) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes((SAMPLE_DIR / "cat_chelsea.jpg").read_bytes())
    with GeminiServer(mode="replay", first_answer="reference", fault_by_digest={file_sha256(folder / "cat.jpg"): rule}) as server:
        summary = run(folder, tmp_path / "store.jsonl", server, revise=0)
        assert server.stats.requests == requests and summary.recovered_requests == 1
    [record] = ann.load_store(tmp_path / "store.jsonl").values()
    assert record.status is status and record.error_kind == kind and record.attempts == 2
    if status is Status.ok:
        assert record.annotation == REFS["cat_chelsea.jpg"] and record.usage.prompt_tokens > 0


def test_best_round_prefers_passing_then_fewer_violations_then_later() -> None:
    from poemlib.annotate.rounds import make_round
    from poemlib.gemini import Outcome

    draft, ref = DRAFTS["summer_palace_pagoda_exif6.jpg"], REFS["summer_palace_pagoda_exif6.jpg"]
    two = make_round(0, Outcome(Status.ok, annotation=draft), attempts=1, latency_s=0.1, prompt_version=None)
    fixed = make_round(1, Outcome(Status.ok, annotation=ref), attempts=1, latency_s=0.1, prompt_version="v1")
    failed = make_round(2, Outcome.failed("safety", "stopped"), attempts=1, latency_s=0.1, prompt_version="v1")
    again = make_round(2, Outcome(Status.ok, annotation=draft), attempts=1, latency_s=0.1, prompt_version="v1")
    assert len(two.meter.violations) == 2 and fixed.meter.passes
    assert ann.best_round([two, fixed, failed]) is fixed and ann.best_round([fixed, again]) is fixed
    assert ann.best_round([two, again]) is again  # equal verdicts: the later round


def test_batch_revisions_go_out_as_a_follow_up_job(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    fit = [p.name for p in few_photos.iterdir() if REFS[p.name].create_condition]
    with GeminiServer(mode="replay", batch_polls_until_done=1) as server:
        summary = run(few_photos, store, server, batch=True, wait=True, revise=2)
        assert server.stats.requests == 0 and server.stats.batch_requests == 4 + len(fit)  # the follow-up job: one round each
        assert len(server.stats.revisions) == len(fit) and all(e["missing"] == [] for e in server.stats.revisions)
        assert len(summary.batch_jobs) == 2 and summary.revision_requests == len(fit)
        assert not ann.batch_state_path(store).exists()
        again = run(few_photos, store, server, batch=True, wait=True, revise=2)  # nothing left to revise: nothing sent
        assert again.attempted == 0 and server.stats.batch_requests == 4 + len(fit)
    records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
    for name in fit:
        record = records[name]
        assert record.first_answer.annotation == DRAFTS[name] and record.annotation == REFS[name] and len(record.revisions) == 1
        assert record.source.startswith("batch:") and record.revisions[0].usage.total_tokens > 0
    costs = ann.cost_frame(records.values()).set_index("item")
    assert costs.loc["total", "revision_usd"] == pytest.approx(sum(ann.usage_cost(r.revisions[0].usage, ann.Prices(), batch=True) for r in records.values() if r.revisions), abs=1e-6)


def test_batch_submit_sends_left_over_rounds_as_a_revision_job_not_first_answers(tmp_path, few_photos) -> None:
    store = tmp_path / "store.jsonl"
    fit = [p.name for p in few_photos.iterdir() if REFS[p.name].create_condition]
    with GeminiServer(mode="replay", batch_polls_until_done=1) as server:
        run(few_photos, store, server, revise=0)  # the drafts, stored without revision
        summary = run(few_photos, store, server, batch=True, wait=True, revise=1)
        assert server.stats.requests == 4 and server.stats.batch_requests == len(fit)  # no first answer again
        assert [e["round"] for e in server.stats.revisions] == [1] * len(fit) and summary.revision_requests == len(fit)
    records = {r.image_paths[0]: r for r in ann.load_store(store).values()}
    assert all(records[n].annotation == REFS[n] and len(records[n].revisions) == 1 for n in fit)
