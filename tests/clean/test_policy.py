"""The eligibility policy: flags, drops and the shipped configs/clean.yaml."""

from __future__ import annotations

import json

import pytest

from poemlib.clean import CleanPolicy, clean, load_policy
from tests.clean.data import DENG, gc, read_lines, unfit


def test_policy_flags_and_drops(tmp_path, monkeypatch) -> None:
    import poemlib.meter
    from poemlib.meter import MeterReport

    verdict = MeterReport(poem_type="五言绝句", mode="pingshui", lines=["白日依山尽"] * 4, form_ok=True, tone_ok=False, rhyme_ok=None)
    monkeypatch.setattr(poemlib.meter, "check", lambda *args, **kwargs: verdict)
    shard = tmp_path / "s.json"
    shard.write_text(
        json.dumps([{"generated_content": gc("五言绝句", "登楼", DENG), "image_path": "a.jpg"}, {"generated_content": unfit("白纸。"), "image_path": "b.jpg"}], ensure_ascii=False),
        encoding="utf-8",
    )
    rep = clean([shard], tmp_path / "1.jsonl", None, policy={"drop_unfit": True})
    rows = read_lines(tmp_path / "1.jsonl")
    assert len(rows) == 1 and "tone_failed" in rows[0]["flags"] and "rhyme_failed" not in rows[0]["flags"]
    assert rep.meter["五言绝句"].tone_checked == 1 and rep.meter["五言绝句"].tone_passed == 0 and rep.meter["五言绝句"].rhyme_checked == 0
    rep = clean([shard], tmp_path / "2.jsonl", None, policy={"drop_tone_fail": True, "drop_unfit": False, "flag_tone_fail": False})
    rows = read_lines(tmp_path / "2.jsonl")
    assert [r["status"] for r in rows] == ["unfit"] and rep.rejected_reasons == {"tone_failed": 1}
    with pytest.raises(ValueError, match="drop_tone_fails"):
        CleanPolicy.model_validate({"drop_tone_fails": True})  # a typo is an error
    default = load_policy()  # configs/clean.yaml: unfit photos stay for transform's include_unfit to decide
    assert default.drop_unfit is False and default.drop_form_fail is True and default.flag_tone_fail is True


def test_policy_errors_name_the_file_and_field(tmp_path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("drop_unfit: true\nmeter_mode: pingshiu\n", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_policy(bad)
    message = str(caught.value)
    assert str(bad) in message and "meter_mode" in message and "pingshiu" in message
    assert load_policy({"drop_unfit": True, "meter_mode": "xinyun"}).meter_mode == "xinyun"
    rules = CleanPolicy(drop_rhyme_fail=True, flag_tone_fail=False).meter_rules()
    assert [(r.check, r.flag, r.drop) for r in rules] == [("form", True, True), ("tone", False, False), ("rhyme", True, True)]


def test_a_meter_checker_failure_is_flagged_not_fatal(tmp_path, monkeypatch) -> None:
    import poemlib.meter

    def broken_check(*args, **kwargs):
        raise RuntimeError("table missing")

    monkeypatch.setattr(poemlib.meter, "check", broken_check)
    shard = tmp_path / "s.json"
    shard.write_text(json.dumps([{"generated_content": gc("五言绝句", "登楼", DENG), "image_path": "a.jpg"}], ensure_ascii=False), encoding="utf-8")
    rep = clean([shard], tmp_path / "c.jsonl", None)
    (row,) = read_lines(tmp_path / "c.jsonl")
    assert row["meter"] == {"error": "RuntimeError: table missing"} and "meter_error" in row["flags"]
    assert rep.meter["五言绝句"].meter_errors == 1 and rep.meter["五言绝句"].all_passed == 0
    assert rep.chars_per_line["五言绝句"] == {"5": 4}  # line lengths still read from the text
