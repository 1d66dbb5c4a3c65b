"""`--meter strict|flag`: strict drops poems failing 平仄 or rhyme and counts what each check and rule dropped per 体裁."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from poemlib.clean import CleanPolicy, clean, load_policy
from poemlib.meter import check_annotation
from poemlib.samples import draft_by_name, reference_by_name
from poemlib.schema import AnnotationRecord
from tests.clean.data import read_lines

DRAFTS, REFS = draft_by_name(), reference_by_name()


def write_store(path) -> None:
    """Every sample reference and every draft as ok records of distinct images."""
    lines = []
    for kind, poems in (("ref", REFS), ("draft", DRAFTS)):
        for name, annotation in poems.items():
            if not annotation.create_condition:
                continue
            sha = hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()
            record = AnnotationRecord(image_sha256=sha, image_paths=[f"{kind}/{name}"], status="ok", annotation=annotation, model="m", prompt_version="v1")
            lines.append(json.dumps(record.store_dict(), ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_strict_drops_every_poem_failing_tone_or_rhyme_and_counts_per_type(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    write_store(store)
    rep = clean([store], tmp_path / "strict.jsonl", None, meter="strict")
    kept = read_lines(tmp_path / "strict.jsonl")
    assert sorted(r["image_paths"][0] for r in kept) == sorted(f"ref/{n}" for n, a in REFS.items() if a.create_condition)
    expected: dict[str, Counter] = {}
    for draft in DRAFTS.values():
        report = check_annotation(draft)
        tally = expected.setdefault(draft.poem_type, Counter())
        tally.update(f"{check}_failed" for check, ok in (("tone", report.tone_ok), ("rhyme", report.rhyme_ok)) if ok is False)
        tally.update({v.rule for v in report.violations})
    assert rep.meter_dropped == {t: dict(c) for t, c in expected.items()}
    assert rep.counts.eligible == len(kept) and sum(rep.rejected_reasons.values()) >= len(DRAFTS)
    frame = rep.to_frames()["meter_dropped"]
    assert frame.loc["词", "词谱平仄"] == expected["词"]["词谱平仄"]


def test_flag_keeps_them_flagged_and_the_preset_overrides_the_policy_file(tmp_path) -> None:
    store = tmp_path / "store.jsonl"
    write_store(store)
    rep = clean([store], tmp_path / "flag.jsonl", None, policy={"drop_tone_fail": True, "drop_rhyme_fail": True}, meter="flag")
    rows = {r["image_paths"][0]: r for r in read_lines(tmp_path / "flag.jsonl")}
    assert len(rows) == len(DRAFTS) + len(DRAFTS) and rep.meter_dropped == {}
    for name, draft in DRAFTS.items():
        report = check_annotation(draft)
        assert ("tone_failed" in rows[f"draft/{name}"]["flags"]) == (report.tone_ok is False)
        assert ("rhyme_failed" in rows[f"draft/{name}"]["flags"]) == (report.rhyme_ok is False)
    assert load_policy().with_meter(None) == load_policy()
    assert CleanPolicy().with_meter("strict").meter_rules() == CleanPolicy(drop_tone_fail=True, drop_rhyme_fail=True).meter_rules()
    with pytest.raises(ValueError, match="strict, flag"):
        CleanPolicy().with_meter("lenient")


def test_cli_meter_option(tmp_path) -> None:
    from typer.testing import CliRunner

    from poemlib.cli import app

    store = tmp_path / "store.jsonl"
    write_store(store)
    args = ["clean", str(store), "--out", str(tmp_path / "c.jsonl"), "--report", str(tmp_path / "r.json"), "--meter", "strict"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "meter dropped" in result.output and "出韵" in result.output
    saved = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert saved["settings"]["policy"]["drop_tone_fail"] is True and saved["meter_dropped"]
    wrong = CliRunner().invoke(app, [*args[:-1], "loose"])
    assert wrong.exit_code != 0 and "strict, flag" in wrong.output
