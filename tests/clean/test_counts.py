"""Hand-written shards and stores give exactly the counts a person computes by hand."""

from __future__ import annotations

import json
import shutil

import pytest

from poemlib.clean import clean, load_report
from poemlib.images import file_sha256
from poemlib.schema import AnnotationRecord
from tests.clean.data import (
    CHUNWANG,
    DENG,
    SHANXING_TRAD,
    ZAOFA,
    gc,
    read_lines,
    run_clean,
    sample_files,
    store_line,
    unfit,
)


def test_hand_counted_legacy_shards(legacy, tmp_path) -> None:
    rep, out = run_clean(legacy, tmp_path, dedupe="latest")
    c = rep.counts
    # By hand: a has 4 good records + 1 without image_path, b has 4, c has 2.
    assert c.records_read == 10
    assert c.malformed == 1
    assert [(m.file, m.index, m.line) for m in rep.malformed] == [(str(legacy["a"]), 4, None)]
    assert "image_path" in rep.malformed[0].reason
    # Images: Train/1, Train/2, Train/3 (each twice), Train/99 (missing), Val/1, Train/4, Val/2.
    assert c.distinct_images == 7
    assert c.duplicate_groups == 3 and c.surplus_records == 3
    assert c.superseded_in_store == 0 and c.candidates == 10
    assert rep.status_read == {"ok": 7, "unfit": 3, "failed": 0}
    assert rep.status_after_dedupe == {"ok": 5, "unfit": 2, "failed": 0}
    assert (c.images_found, c.images_missing, c.images_unchecked) == (6, 1, 0)
    assert [m.image_path for m in rep.missing_images] == ["Train/99.jpg"]
    assert rep.missing_images[0].sources == [f"{legacy['a']}#3"]
    assert rep.types_read == {"五言绝句": 2, "七言绝句": 3, "五言律诗": 1, "七言律诗": 0, "词": 1}
    assert rep.types_after_dedupe == {"五言绝句": 1, "七言绝句": 2, "五言律诗": 1, "七言律诗": 0, "词": 1}
    assert rep.tokens_read.n == 9 and rep.tokens_read.missing_or_zero == 1 and rep.tokens_read.sum == 8750
    assert rep.tokens_read.min == 450 and rep.tokens_read.max == 1500
    # latest: Train/1 -> b[0] (broken, form fails, dropped); Train/2 -> c[0]; Train/3 -> b[3].
    groups = {g.identity: g for g in rep.duplicate_groups}
    assert len(groups) == 3 and all(g.identity.startswith("sha256:") for g in groups.values())
    chosen = sorted(g.chosen for g in rep.duplicate_groups)
    assert chosen == sorted([f"{legacy['b']}#0", f"{legacy['c']}#0", f"{legacy['b']}#3"])
    assert sorted(len(g.members) for g in rep.duplicate_groups) == [2, 2, 2]
    assert {u.reason for u in rep.unfit} == {"扫描的书页。", "图片为统计图表。"}
    # Eligible: Train/2, Val/1, Val/2; rejected by policy: Train/1 (form), Train/99 (missing), 2 unfit.
    assert c.eligible == 3 and c.rejected_by_policy == 4
    assert rep.rejected_reasons == {"duplicate": 3, "unfit": 2, "form_failed": 1, "image_missing": 1}
    assert all(rep.invariants.values()), rep.invariants
    clean_rows = read_lines(out)
    rejected_rows = read_lines(out.with_name("rejected.jsonl"))
    assert len(clean_rows) == 3 and len(clean_rows) + len(rejected_rows) == c.records_read
    for row in clean_rows + rejected_rows:
        AnnotationRecord.model_validate(row)
    by_path = {r["image_paths"][0]: r for r in clean_rows}
    assert set(by_path) == {"Train/2.jpg", "Val/1.jpg", "Val/2.jpg"}
    trad = by_path["Val/1.jpg"]
    assert trad["annotation"]["poem_type"] == "七言绝句" and trad["annotation"]["poem_content"] == SHANXING_TRAD  # type normalised, text kept
    assert "traditional_chars" in trad["flags"]
    assert by_path["Val/2.jpg"]["annotation"]["poem_type"] == "词"
    assert all(r["meter"] is not None and r["model"] == "gemini-2.5-pro (legacy)" for r in clean_rows)
    assert by_path["Train/2.jpg"]["image_sha256"] == file_sha256(legacy["root"] / "Train/2.jpg")
    assert by_path["Train/2.jpg"]["source"] == f"{legacy['c']}#0"
    missing = [r for r in rejected_rows if r["image_paths"] == ["Train/99.jpg"]]
    assert len(missing) == 1 and "reject:image_missing" in missing[0]["flags"] and "path_identity" in missing[0]["flags"]
    # The report on disk is the same report.
    assert load_report(tmp_path / "out" / "report.json").counts == c


def test_counts_match_an_independent_count(tmp_path) -> None:
    """Random overlapping shards: clean's counts equal a naive count written the way a person would."""
    import random

    rng = random.Random(7)
    poems = [("五言绝句", DENG), ("七言绝句", ZAOFA), ("五言律诗", CHUNWANG), ("七言絕句", SHANXING_TRAD)]
    shards = []
    for k in range(5):
        rows = []
        for _ in range(120):
            folder = rng.choice(["Train", "Val"])
            path = f"{folder}\\{rng.randrange(300)}.jpg"
            if rng.random() < 0.05:
                content = unfit("无可入诗。")
            else:
                ptype, text = rng.choice(poems)
                content = gc(ptype, "题", text)
            rows.append({"generated_content": content, "total_token_count": rng.randint(100, 900), "image_path": path})
        shard = tmp_path / f"part{k}.json"
        shard.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        shards.append(shard)
    rep = clean(shards, tmp_path / "c.jsonl", None, dedupe="latest")
    # The independent count: every record, keyed by its path with '/' separators; the last one read wins.
    records = [r for shard in shards for r in json.loads(shard.read_text(encoding="utf-8"))]
    last = {}
    for r in records:
        last[r["image_path"].replace("\\", "/")] = r
    occurrences = {}
    for r in records:
        key = r["image_path"].replace("\\", "/")
        occurrences[key] = occurrences.get(key, 0) + 1
    unfit_after = sum(1 for r in last.values() if r["generated_content"]["create_condition"] is False)
    c = rep.counts
    assert c.records_read == len(records) == 600
    assert c.distinct_images == len(last)
    assert c.duplicate_groups == sum(1 for n in occurrences.values() if n > 1)
    assert c.surplus_records == len(records) - len(last)
    assert (c.ok, c.unfit, c.failed) == (len(last) - unfit_after, unfit_after, 0)
    assert c.unfit_read == sum(1 for r in records if r["generated_content"]["create_condition"] is False)
    assert rep.tokens_read.sum == sum(r["total_token_count"] for r in records)
    assert c.malformed == 0 and all(rep.invariants.values())


def test_store_plus_legacy_shard(tmp_path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    files = sample_files()[:3]
    for i, src in enumerate(files):
        shutil.copyfile(src, root / f"p{i}.jpg")
    sha = [file_sha256(root / f"p{i}.jpg") for i in range(3)]
    store = tmp_path / "store.jsonl"
    store.write_text(
        "\n".join(
            [
                store_line(sha[0], "p0.jpg", "failed", error_kind="timeout"),  # line 1: superseded by line 3
                store_line(sha[1], "p1.jpg", annotation=gc("五言绝句", "登楼", DENG)),  # line 2
                store_line(sha[0], "p0.jpg", annotation=gc("七言绝句", "早发", ZAOFA)),  # line 3
                "{not json",  # line 4: malformed
                store_line(sha[2], "p2.jpg", "failed", error_kind="safety"),  # line 5
                store_line("xyz", "p2.jpg", annotation=gc("五言绝句", "坏", DENG)),  # line 6: malformed (bad sha)
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    shard = tmp_path / "legacy.json"
    shard.write_text(
        json.dumps(
            [
                {"generated_content": gc("五言律诗", "春望", CHUNWANG), "total_token_count": 700, "image_path": "P1.JPG"},  # same bytes as p1 (case differs)
                {"generated_content": None, "error": "503 UNAVAILABLE", "image_path": "p2.jpg"},  # failed, same image as store line 5
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    rep = clean([store, shard], tmp_path / "out" / "clean.jsonl", tmp_path / "out" / "r.json", images_root=root, dedupe="latest")
    c = rep.counts
    assert c.records_read == 6 and c.malformed == 2 and c.superseded_in_store == 1
    assert sorted((m.line, m.index) for m in rep.malformed) == [(4, None), (6, None)]
    assert c.candidates == 5 and c.distinct_images == 3 and c.duplicate_groups == 2 and c.surplus_records == 2
    assert rep.status_read == {"ok": 3, "unfit": 0, "failed": 3}
    assert rep.failed_kinds_read == {"api_error": 1, "safety": 1, "timeout": 1}
    assert rep.status_after_dedupe == {"ok": 2, "unfit": 0, "failed": 1}
    p1 = next(g for g in rep.duplicate_groups if "p1.jpg" in g.image_paths)
    assert p1.chosen == f"{shard}#0"  # latest: the legacy shard was given after the store
    assert p1.identity == "sha256:" + sha[1]
    assert rep.repairs.get("image_path_resolved_differently") == 1
    assert c.images_found == 3
    assert all(rep.invariants.values())
    rejected = read_lines(tmp_path / "out" / "rejected.jsonl")
    assert sorted(f for r in rejected for f in r["flags"] if f.startswith("reject:")) == sorted(
        ["reject:superseded", "reject:duplicate", "reject:duplicate", "reject:failed"]
    )


def test_a_failed_run_leaves_the_previous_outputs_whole(legacy, tmp_path, monkeypatch) -> None:
    import poemlib.meter

    rep, out = run_clean(legacy, tmp_path)
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # not an Exception: the meter wrapper lets it through and clean stops mid-write

    monkeypatch.setattr(poemlib.meter, "check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_clean(legacy, tmp_path, dedupe="first")
    after = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert after == before and sorted(after) == ["clean.jsonl", "rejected.jsonl", "report.json"]
    assert rep.counts.written_clean == len(read_lines(out)) == 3


def test_progress_bars_follow_the_shared_policy(legacy, tmp_path, capsys) -> None:
    run_clean(legacy, tmp_path / "on", progress=True)
    shown = capsys.readouterr().err
    assert "clean: read" in shown and "3/3" in shown and "clean: meter + write" in shown and "7/7" in shown
    run_clean(legacy, tmp_path / "off", progress=False)
    assert "clean:" not in capsys.readouterr().err
