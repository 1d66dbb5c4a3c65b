"""The LLM judge: parsing, skipped without a key, scores kept apart, and 429/5xx retried through poemlib.gemini."""

from __future__ import annotations

import types as pytypes

import pytest

from poemlib import evaluate as ev
from poemlib.schema import GenerationResult

FAST_RETRIES = {"backoff_initial_s": 0.05, "jitter_s": 0.0, "max_workers": 1}


def test_judge_parsing_and_skip_without_key(monkeypatch, tmp_path) -> None:
    ok = ev.parse_judgement('{"image_relevance": 4, "imagery": 3, "fluency": 5, "yijing": 2, "rationale": "ok"}')
    assert ok == {"image_relevance": 4, "imagery": 3, "fluency": 5, "yijing": 2, "rationale": "ok"}
    with pytest.raises(ValueError, match="judge score 'image_relevance' missing or outside 1-5: 7"):
        ev.parse_judgement('{"image_relevance": 7, "imagery": 3, "fluency": 5, "yijing": 2}')
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setattr("poemlib.gemini.resolve_api_key", lambda *a, **k: None)  # ignore a developer's .env
    assert ev.run_judge([], [], tmp_path) == (None, "skipped: no GEMINI_API_KEY")
    assert "意境" in ev.judge_rubric() and all(c in ev.judge_rubric() for c in ev.JUDGE_CRITERIA)


def _sdk_response(text: str):
    """A real google-genai response object carrying `text` as the model's answer."""
    from google.genai import types

    return types.GenerateContentResponse(candidates=[types.Candidate(
        content=types.Content(role="model", parts=[types.Part(text=text)]), finish_reason=types.FinishReason.STOP)])


def test_judge_runs_with_a_key_and_stays_apart(monkeypatch, tmp_path, poem, unfit, make_item) -> None:
    """With a key the judge scores every poem (here a scripted client); unfit and failed answers are not judged."""
    calls = []

    class ScriptedModels:
        def generate_content(self, *, model, contents, config):
            poem_text = contents[0].parts[1].text
            calls.append((model, poem_text))
            assert "意境" in config.system_instruction and config.response_mime_type == "application/json"
            if "坏" in poem_text:
                return _sdk_response("not json")
            return _sdk_response('{"image_relevance": 5, "imagery": 4, "fluency": 3, "yijing": 2, "rationale": "r"}')

    monkeypatch.setattr("poemlib.gemini.resolve_api_key", lambda *a, **k: "test-key")
    monkeypatch.setattr("poemlib.gemini.make_client", lambda *a, **k: pytypes.SimpleNamespace(models=ScriptedModels()))
    bad = poem.model_copy(update={"poem_title": "坏"})
    items = [make_item("a"), make_item("b"), make_item("c")]
    rows = [
        ev.score_result(items[0], GenerationResult(backend="m", annotation=poem, raw_text=poem.target_text())),
        ev.score_result(items[1], GenerationResult(backend="m", annotation=bad, raw_text=bad.target_text())),
        ev.score_result(items[2], GenerationResult(backend="m", annotation=unfit, raw_text=unfit.target_text())),
    ]
    df, status = ev.run_judge(rows, items, tmp_path)
    assert len(calls) == 2 and status == "ran: gemini-2.5-pro, 1 poems judged, 1 failed"
    assert "体裁：五言绝句\n题目：登鹳雀楼\n白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。" in {text for _, text in calls}
    assert df.loc[df.image == "a", ["image_relevance", "imagery", "fluency", "yijing"]].iloc[0].tolist() == [5, 4, 3, 2]
    assert df.loc[df.image == "b", "error"].iloc[0].startswith("invalid_json")
    table = ev.judge_summary(df)
    assert table.loc["m", "yijing"] == 2 and table.loc["m", "n_judged"] == 1
    assert ev.run_judge(rows, items, tmp_path, enabled=False) == (None, "skipped: disabled")


def test_judge_retries_429_and_503_from_the_loopback_server(monkeypatch, tmp_path, poem, make_item) -> None:
    """The judge goes through poemlib.gemini's retry path: a 429 and a 503 are retried before the answer is read."""
    from poemlib.offline import GeminiServer

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    item = make_item("a")
    rows = [ev.score_result(item, GenerationResult(backend="m", annotation=poem, raw_text=poem.target_text()))]
    with GeminiServer(mode="replay", script=["429", "503", "ok"], retry_after_s=0.2) as server:
        df, status = ev.run_judge(rows, [item], tmp_path, settings={"base_url": server.base_url, **FAST_RETRIES})
        assert server.stats.requests == 3
        assert server.stats.by_outcome["429"] == 1 and server.stats.by_outcome["503"] == 1
    # the replay server answers with an annotation, not scores: the third answer arrived and was read (and refused)
    error = df.loc[0, "error"]
    assert error.startswith("schema_invalid") and "judge score 'image_relevance' missing" in error
    assert status == "ran: gemini-2.5-pro, 0 poems judged, 1 failed"


def test_judge_gives_up_after_its_attempts(monkeypatch, tmp_path, poem, make_item) -> None:
    from poemlib.offline import GeminiServer

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    item = make_item("a")
    rows = [ev.score_result(item, GenerationResult(backend="m", annotation=poem, raw_text=poem.target_text()))]
    with GeminiServer(mode="replay", script=["503", "503"]) as server:
        df, _ = ev.run_judge(rows, [item], tmp_path, settings={"base_url": server.base_url, "max_attempts": 2, **FAST_RETRIES})
        assert server.stats.requests == 2
    assert df.loc[0, "error"].startswith("GeminiCallError: could not judge a")
