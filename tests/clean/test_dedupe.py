"""Dedupe policies: which version of a duplicated image is chosen."""

from __future__ import annotations

import json

from poemlib.clean import clean
from tests.clean.data import DENG, gc, run_clean


def test_dedupe_policies_pick_expected_version(legacy, tmp_path) -> None:
    picks = {}
    for policy in ("latest", "first", "best"):
        rep, _ = run_clean(legacy, tmp_path / policy, dedupe=policy)
        group = next(g for g in rep.duplicate_groups if g.image_paths == ["Train/1.jpg"])
        picks[policy] = group.chosen
        assert rep.counts.distinct_images == 7 and rep.counts.surplus_records == 3  # dedupe counts do not depend on the policy
    assert picks["latest"] == f"{legacy['b']}#0"  # the broken poem, read last
    assert picks["first"] == f"{legacy['a']}#0"
    assert picks["best"] == f"{legacy['a']}#0"  # the correct poem passes more checks
    rep, _ = run_clean(legacy, tmp_path / "best2", dedupe="best")
    group = next(g for g in rep.duplicate_groups if g.image_paths == ["Train/1.jpg"])
    passed = {m.source: m.meter_passed for m in group.members}
    assert passed[f"{legacy['a']}#0"] > passed[f"{legacy['b']}#0"]
    assert rep.counts.eligible == 4  # Train/1 now eligible


def test_best_breaks_ties_to_the_later_record(tmp_path) -> None:
    shard1 = tmp_path / "s1.json"
    shard2 = tmp_path / "s2.json"
    shard1.write_text(json.dumps([{"generated_content": gc("五言绝句", "甲", DENG), "image_path": "x\\a.jpg"}], ensure_ascii=False), encoding="utf-8")
    shard2.write_text(json.dumps([{"generated_content": gc("五言绝句", "乙", DENG), "image_path": "x/a.jpg"}], ensure_ascii=False), encoding="utf-8")
    rep = clean([shard1, shard2], tmp_path / "c.jsonl", None, dedupe="best")
    assert rep.counts.distinct_images == 1 and rep.duplicate_groups[0].chosen == f"{shard2}#0"
    assert rep.duplicate_groups[0].identity == "path:x/a.jpg"  # no images root: the normalised path is the identity
    assert rep.counts.images_unchecked == 1


def test_first_policy_never_prefers_a_failure(tmp_path) -> None:
    shard1, shard2 = tmp_path / "a.json", tmp_path / "b.json"
    shard1.write_text(json.dumps([{"generated_content": "抱歉，我无法处理。", "image_path": "Train\\5.jpg"}], ensure_ascii=False), encoding="utf-8")
    shard2.write_text(json.dumps([{"generated_content": gc("五言绝句", "登楼", DENG), "image_path": "Train\\5.jpg"}], ensure_ascii=False), encoding="utf-8")
    rep = clean([shard1, shard2], tmp_path / "c.jsonl", None, dedupe="first")
    assert rep.status_read == {"ok": 1, "unfit": 0, "failed": 1} and rep.failed_kinds_read == {"invalid_json": 1}
    assert rep.duplicate_groups[0].chosen == f"{shard2}#0"
