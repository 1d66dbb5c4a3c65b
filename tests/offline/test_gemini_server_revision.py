"""Revision through the real google-genai SDK: a draft first, the reference once a revision names every fault.

The server's contract with a revising client: a violation is named when the message holds its rule, its character
and its line as 第N句 (see `poemlib.offline.gemini.revision`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.genai import types

from poemlib.config import SAMPLE_DIR
from poemlib.instructions import render_instruction
from poemlib.io import read_jsonl
from poemlib.meter import Violation, check_annotation
from poemlib.offline.gemini import GeminiServer
from poemlib.samples import (
    DRAFTS_FILE,
    draft_by_name,
    reference_by_name,
    replay_mismatch,
)
from poemlib.schema import Annotation, PoemRequest
from tests.offline.gemini_server_support import JSON_CONFIG, MODEL, client_for

DRAFTS = draft_by_name()
REFERENCES = reference_by_name()
ASTRONAUT = "astronaut_eileen_collins.jpg"  # 七言律诗, one fault (失粘)
COFFEE = "coffee_cup.jpg"  # 词·浣溪沙, two faults (词谱平仄, 出韵)
SUMMER_PALACE = "summer_palace_pagoda_exif6.jpg"  # 七言律诗, two faults (出韵, 仄收)


@pytest.fixture(scope="module")
def server():
    """One replay server over the sample photos, references and drafts (stats reset per test)."""
    with GeminiServer(mode="replay") as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_stats(server):
    server.reset_stats()


def photo_part(name: str) -> types.Part:
    return types.Part.from_bytes(data=(SAMPLE_DIR / name).read_bytes(), mime_type="image/jpeg")


def first_request(name: str, text: str = "请为这张照片作一首诗。") -> list[types.Content]:
    return [types.Content(role="user", parts=[photo_part(name), types.Part.from_text(text=text)])]


def ask(server: GeminiServer, contents: list[types.Content]) -> tuple[Annotation, str]:
    """One call; the parsed annotation and the raw answer text (to carry into the next turn)."""
    client = client_for(server)  # kept in a name: a collected client closes its HTTP connection mid-call
    response = client.models.generate_content(model=MODEL, contents=contents, config=JSON_CONFIG)
    return Annotation.model_validate_json(response.text), response.text


def revise(server: GeminiServer, name: str, answer_text: str, message: str) -> Annotation:
    """The revision round: photo request, the model's answer, the revision message."""
    contents = [
        *first_request(name),
        types.Content(role="model", parts=[types.Part.from_text(text=answer_text)]),
        types.Content(role="user", parts=[types.Part.from_text(text=message)]),
    ]
    return ask(server, contents)[0]


def naming(violations: list[Violation]) -> str:
    """A revision message in the contract's terms: 第N句, the character and the rule of each violation."""
    lines = [f"第{v.line}句第{v.position}字「{v.char}」：{v.rule}（{v.message}）" for v in violations]
    return "这首诗有以下格律问题，请修改后按同样的 JSON 格式重写：\n" + "\n".join(lines)


def violations_of(annotation: Annotation) -> list[Violation]:
    report = check_annotation(annotation)
    assert report is not None
    return report.violations


@pytest.mark.parametrize("name", sorted(DRAFTS))
def test_every_draft_keeps_the_form_and_fails_tone_or_rhyme(name):
    reference, draft = REFERENCES[name], DRAFTS[name]
    assert (draft.poem_type, draft.poem_title) == (reference.poem_type, reference.poem_title)
    assert draft.poem_content != reference.poem_content
    ref_report, draft_report = check_annotation(reference), check_annotation(draft)
    assert ref_report.ok and ref_report.form_ok
    assert draft_report.form_ok is True and (draft_report.tone_ok is False or draft_report.rhyme_ok is False)
    assert 1 <= len(draft_report.violations) <= 3


def test_draft_file_lists_the_flaws_the_checker_finds():
    rows = list(read_jsonl(SAMPLE_DIR / DRAFTS_FILE, tolerate_torn_tail=False))
    fit = {name for name, ann in REFERENCES.items() if ann.create_condition}
    assert {row["image"] for row in rows} == fit
    for row in rows:
        found = {f"第{v.line}句{v.rule}「{v.char}」" for v in violations_of(DRAFTS[row["image"]])}
        assert set(row["flaws"]) == found, row["image"]
    rules = {v.rule for draft in DRAFTS.values() for v in violations_of(draft)}
    assert {"失粘", "出韵", "孤平", "三平尾", "重韵", "二四六分明", "词谱平仄", "仄收", "平收"} <= rules


def test_first_answer_is_the_draft_and_fails_meter(server):
    annotation, _ = ask(server, first_request(SUMMER_PALACE))
    assert annotation == DRAFTS[SUMMER_PALACE]
    assert {v.rule for v in violations_of(annotation)} == {"出韵", "仄收"}
    assert server.stats.by_answer == {"draft": 1} and server.stats.revisions == []


def test_revision_naming_every_violation_gets_the_reference_which_passes(server):
    annotation, text = ask(server, first_request(COFFEE))
    found = violations_of(annotation)
    message = naming(found)
    revised = revise(server, COFFEE, text, message)
    assert revised == REFERENCES[COFFEE] and check_annotation(revised).ok
    [entry] = server.stats.revisions
    assert entry["message"] == message and entry["round"] == 1 and entry["answer"] == "reference"
    assert entry["named"] == entry["violations"] == [v.short() for v in found] and entry["missing"] == []
    assert entry["fault"] is None
    assert server.stats.by_answer == {"draft": 1, "reference": 1}


def test_revision_naming_none_gets_the_same_draft(server):
    annotation, text = ask(server, first_request(ASTRONAUT))
    again = revise(server, ASTRONAUT, text, "请再仔细检查格律，改好后按同样的 JSON 格式重写。")
    assert again == annotation == DRAFTS[ASTRONAUT]
    [entry] = server.stats.revisions
    assert entry["answer"] == "draft" and entry["named"] == [] and entry["missing"] == ["L7P2 失粘 道"]


def test_revision_naming_only_some_gets_the_same_draft(server):
    annotation, text = ask(server, first_request(SUMMER_PALACE))
    found = violations_of(annotation)
    again = revise(server, SUMMER_PALACE, text, naming(found[:1]))
    assert again == DRAFTS[SUMMER_PALACE]
    [entry] = server.stats.revisions
    assert entry["named"] == [found[0].short()] and entry["missing"] == [v.short() for v in found[1:]]


def test_a_violation_counts_as_named_only_with_rule_char_and_line(server):
    annotation, text = ask(server, first_request(ASTRONAUT))
    [fault] = violations_of(annotation)
    wrong_line = naming([fault.model_copy(update={"line": fault.line + 1})])
    assert revise(server, ASTRONAUT, text, wrong_line) == DRAFTS[ASTRONAUT]
    no_char = f"第{fault.line}句{fault.rule}，请改正。"
    assert revise(server, ASTRONAUT, text, no_char) == DRAFTS[ASTRONAUT]
    assert revise(server, ASTRONAUT, text, f"第{fault.line}句「{fault.char}」{fault.rule}") == REFERENCES[ASTRONAUT]
    assert [e["answer"] for e in server.stats.revisions] == ["draft", "draft", "reference"]


def test_second_round_after_an_empty_first_round_can_still_succeed(server):
    annotation, text = ask(server, first_request(COFFEE))
    message = naming(violations_of(annotation))
    contents = [
        *first_request(COFFEE),
        types.Content(role="model", parts=[types.Part.from_text(text=text)]),
        types.Content(role="user", parts=[types.Part.from_text(text="请修改。")]),
        types.Content(role="model", parts=[types.Part.from_text(text=text)]),
        types.Content(role="user", parts=[types.Part.from_text(text=message)]),
    ]
    assert ask(server, contents)[0] == REFERENCES[COFFEE]
    assert [(e["round"], e["message"]) for e in server.stats.revisions] == [(2, message)]


def test_first_answer_reference_keeps_the_old_behaviour():
    with GeminiServer(mode="replay", first_answer="reference") as server:
        annotation, text = ask(server, first_request(COFFEE))
        assert annotation == REFERENCES[COFFEE]
        assert revise(server, COFFEE, text, "请修改。") == REFERENCES[COFFEE]
        assert server.stats.by_answer == {"reference": 2} and server.stats.revisions[0]["violations"] == []


def test_unknown_first_answer_mode_is_refused():
    with pytest.raises(ValueError, match="first_answer"):
        GeminiServer(first_answer="best")


def test_request_for_a_form_without_recording_gets_the_recorded_poem_with_a_note(server):
    asked = render_instruction(PoemRequest(poem_type="词", cipai="浣溪沙"))
    annotation, _ = ask(server, first_request(SUMMER_PALACE, asked))
    note = "【离线回放：所求体裁（词·浣溪沙）无录制诗，以下为录制的七言律诗】"
    assert replay_mismatch(annotation) == note and annotation.poem_explanation.startswith(note)
    draft = DRAFTS[SUMMER_PALACE]
    assert annotation.poem_content == draft.poem_content
    assert annotation.poem_explanation == note + draft.poem_explanation
    assert server.stats.mismatches == [note]


def test_request_for_another_cipai_of_a_ci_is_marked_but_the_same_form_is_not(server):
    other_cipai, _ = ask(server, first_request(COFFEE, render_instruction(PoemRequest(poem_type="词", cipai="如梦令"))))
    assert replay_mismatch(other_cipai) == "【离线回放：所求体裁（词·如梦令）无录制诗，以下为录制的词·浣溪沙】"
    for request in (PoemRequest(poem_type="词", cipai="浣溪沙"), PoemRequest(poem_type="词"), PoemRequest(mood="闲适")):
        annotation, _ = ask(server, first_request(COFFEE, render_instruction(request, variant=1)))
        assert replay_mismatch(annotation) is None and annotation == DRAFTS[COFFEE]
    asked_qilv, _ = ask(server, first_request(COFFEE, render_instruction(PoemRequest(poem_type="七言律诗"), variant=2)))
    assert replay_mismatch(asked_qilv) == "【离线回放：所求体裁（七言律诗）无录制诗，以下为录制的词·浣溪沙】"


def test_revisions_sent_as_a_follow_up_batch_job(server):
    """Batch mode sends the failing answers' revisions as a batch of their own: same rules per request."""
    answers = {name: ask(server, first_request(name)) for name in (COFFEE, ASTRONAUT)}

    def follow_up(name: str, message: str) -> dict:
        image = (SAMPLE_DIR / name).read_bytes()
        return {
            "contents": [
                {"role": "user", "parts": [{"inline_data": {"mime_type": "image/jpeg", "data": image}}, {"text": "作诗"}]},
                {"role": "model", "parts": [{"text": answers[name][1]}]},
                {"role": "user", "parts": [{"text": message}]},
            ],
            "config": {"response_mime_type": "application/json"},
            "metadata": {"key": name},
        }

    client = client_for(server)
    src = [follow_up(COFFEE, naming(violations_of(answers[COFFEE][0]))), follow_up(ASTRONAUT, "请修改。")]
    job = client.batches.create(model=MODEL, src=src)
    for _ in range(5):
        job = client.batches.get(name=job.name)
        if job.state == types.JobState.JOB_STATE_SUCCEEDED:
            break
    coffee, astronaut = job.dest.inlined_responses
    assert Annotation.model_validate_json(coffee.response.text) == REFERENCES[COFFEE]
    assert Annotation.model_validate_json(astronaut.response.text) == DRAFTS[ASTRONAUT]
    assert [e["answer"] for e in server.stats.revisions] == ["reference", "draft"] and server.stats.batch_requests == 2


def test_a_draft_must_keep_its_references_form_and_title(tmp_path):
    import json
    import shutil

    from poemlib.samples import ANNOTATIONS_FILE, SampleDataError

    def sample_dir_with(case: str, line: dict) -> Path:
        folder = tmp_path / case  # one folder per case: the loader caches by path and mtime
        folder.mkdir()
        shutil.copy(SAMPLE_DIR / ANNOTATIONS_FILE, folder / ANNOTATIONS_FILE)
        (folder / DRAFTS_FILE).write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
        return folder

    other_form = DRAFTS[COFFEE].model_copy(update={"poem_type": "七言绝句"}).model_dump(mode="json")
    with pytest.raises(SampleDataError, match=r"drafts.jsonl: draft of 'coffee_cup.jpg' is a 七言绝句 .* its reference is a 词"):
        draft_by_name(sample_dir_with("form", {"image": COFFEE, "flaws": [], "draft": other_form}))
    unfit = {"image": "text_page_scan.jpg", "draft": DRAFTS[COFFEE].model_dump(mode="json")}
    with pytest.raises(SampleDataError, match="draft of 'text_page_scan.jpg' has no fit reference poem"):
        draft_by_name(sample_dir_with("unfit", unfit))
    with pytest.raises(SampleDataError, match="each line needs 'image' and 'draft'"):
        draft_by_name(sample_dir_with("keys", {"image": COFFEE}))
