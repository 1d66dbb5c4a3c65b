"""Keys, error classification, request building, response interpretation and the rate limiter's window."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from poemlib import gemini
from poemlib.gemini import keys
from poemlib.schema import Status, gemini_response_schema

POEM = {"poem_type": "五言绝句", "poem_title": "秋池", "poem_content": "一\n二\n三\n四", "poem_explanation": "赏析"}


def test_key_resolution_order_and_offline_key(tmp_path, monkeypatch) -> None:
    env = tmp_path / ".env"
    env.write_text('# secrets\nexport GEMINI_API_KEY="from-dotenv"\nOTHER=1 # note\n', encoding="utf-8")
    assert gemini.resolve_api_key(env_file=env) == "from-dotenv"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    assert gemini.resolve_api_key(env_file=env) == "from-env"
    assert gemini.resolve_api_key(" explicit ", env_file=env) == "explicit"
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.setattr(keys, "PROJECT_ROOT", tmp_path / "empty")  # no .env there
    assert gemini.resolve_api_key() is None
    assert gemini.key_for_endpoint(None, "http://127.0.0.1:9") == gemini.OFFLINE_API_KEY
    assert gemini.key_for_endpoint(None, None) is None
    assert "--offline" in gemini.no_key_message() and "GEMINI_API_KEY" in gemini.no_key_message()
    assert gemini.is_loopback("http://127.0.0.1:8765") and gemini.is_loopback("http://localhost/") and not gemini.is_loopback("https://example.com")


def test_retry_after_header_and_retry_info_are_read() -> None:
    from google.genai import errors

    class Resp:
        headers = {"Retry-After": "7"}  # noqa: RUF012 - a stand-in for an httpx response

    exc = errors.ClientError(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow down"}}, Resp())
    assert gemini.retry_after_seconds(exc) == 7.0
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "x", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]}}
    assert gemini.retry_after_seconds(errors.ClientError(429, body, None)) == 38.0
    failure = gemini.classify_exception(errors.ClientError(429, body, None))
    assert failure.kind == "rate_limited" and failure.retryable and failure.retry_after_s == 38.0


@pytest.mark.parametrize(
    ("code", "kind", "retryable", "fatal"),
    [(401, "auth", False, True), (403, "auth", False, True), (404, "api_error", False, True), (400, "api_error", False, False), (408, "timeout", True, False), (504, "timeout", True, False), (503, "server_error", True, False)],
)
def test_http_errors_are_classified(code: int, kind: str, retryable: bool, fatal: bool) -> None:
    from google.genai import errors

    cls = errors.ServerError if code >= 500 else errors.ClientError
    failure = gemini.classify_exception(cls(code, {"error": {"code": code, "status": "X", "message": "m"}}, None))
    assert (failure.kind, failure.retryable, failure.fatal, failure.code) == (kind, retryable, fatal, code)
    assert failure.message.startswith(f"HTTP {code} X: m")


def test_transport_errors_are_transient() -> None:
    import httpx

    assert gemini.classify_exception(httpx.ConnectError("refused")).kind == "server_error"
    assert gemini.classify_exception(httpx.ReadTimeout("slow")).kind == "timeout"
    assert gemini.classify_exception(TimeoutError()).kind == "timeout"
    assert gemini.classify_exception(json.JSONDecodeError("x", "<html>", 0)).retryable
    other = gemini.classify_exception(KeyError("k"))
    assert (other.kind, other.retryable) == ("api_error", False) and "KeyError" in other.message


def test_request_shape() -> None:
    settings = gemini.GeminiSettings(thinking_budget=512, max_output_tokens=4096, temperature=0.3)
    schema = gemini_response_schema()
    gen = gemini.generation_config(settings, "系统", schema)
    assert (gen.system_instruction, gen.response_mime_type, gen.temperature, gen.max_output_tokens) == ("系统", "application/json", 0.3, 4096)
    assert gen.thinking_config.thinking_budget == 512 and gen.response_schema == schema
    assert gemini.generation_config(settings.model_copy(update={"thinking_budget": None}), "s").thinking_config is None
    parts = gemini.user_contents(b"\xff\xd8jpeg", "作诗")[0].parts
    assert parts[0].inline_data.mime_type == "image/jpeg" and parts[0].inline_data.data == b"\xff\xd8jpeg" and parts[1].text == "作诗"
    rest = gemini.rest_request(settings, "系统", b"\xff\xd8jpeg", "作诗", schema)
    assert rest["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 4096, "responseMimeType": "application/json", "responseSchema": schema, "thinkingConfig": {"thinkingBudget": 512}}
    assert rest["contents"][0]["parts"][1] == {"text": "作诗"} and rest["systemInstruction"]["parts"][0]["text"] == "系统"


def _response(text: str | None, finish: str = "STOP"):
    from google.genai import types

    parts = [{"text": "thinking…", "thought": True}] + ([{"text": text}] if text is not None else [])
    return types.GenerateContentResponse.model_validate(
        {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
         "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "cachedContentTokenCount": 4}}
    )


def test_interpret_response_outcomes() -> None:
    good = gemini.interpret_response(_response("```json\n" + json.dumps(POEM, ensure_ascii=False) + "\n```"))
    assert good.status is Status.ok and good.annotation.poem_title == "秋池" and good.value is good.annotation and good.finish_reason == "STOP"
    assert (good.usage.prompt_tokens, good.usage.output_tokens, good.usage.thinking_tokens, good.usage.cached_tokens) == (10, 5, 7, 4)
    bad = gemini.interpret_response(_response(json.dumps({"create_condition": True, "poem_content": "一句"}, ensure_ascii=False)))
    assert (bad.status, bad.error_kind) == (Status.failed, "schema_invalid") and "poem_explanation" in bad.error_message and bad.raw_text
    cut = gemini.interpret_response(_response('{"poem_', "MAX_TOKENS"))
    assert (cut.error_kind, cut.finish_reason, cut.raw_text) == ("truncated", "MAX_TOKENS", '{"poem_') and "5 output + 7 thinking" in cut.error_message
    prose = gemini.interpret_response(_response("我不会写"))
    assert prose.error_kind == "invalid_json" and prose.raw_text == "我不会写"
    empty = gemini.interpret_response(_response(None))
    assert empty.error_kind == "empty" and "finishReason STOP" in empty.error_message


def test_interpret_response_with_the_callers_parser() -> None:
    def scores(text: str, _parsed: object) -> dict[str, int]:
        obj = json.loads(text)
        if not 1 <= obj["imagery"] <= 5:
            raise ValueError(f"imagery outside 1-5: {obj['imagery']}")
        return obj

    judged = gemini.interpret_response(_response('{"imagery": 4}'), parse=scores)
    assert judged.status is Status.ok and judged.value == {"imagery": 4} and judged.annotation is None
    wrong = gemini.interpret_response(_response('{"imagery": 9}'), parse=scores)
    assert (wrong.error_kind, wrong.error_message) == ("schema_invalid", "imagery outside 1-5: 9")


def test_rate_limiter_sliding_window() -> None:
    async def go() -> list[float]:
        limiter = gemini.RateLimiter(5, window_s=0.3)
        times = []
        for _ in range(16):
            await limiter.acquire()
            times.append(time.monotonic())
        return times

    times = asyncio.run(go())
    assert gemini.peak_in_window(times, 0.3) == 5
    assert times[-1] - times[0] >= 3 * 0.3  # 16 acquisitions need at least three full windows
    assert gemini.peak_in_window([0, 1, 59.9, 60, 61], 60) == 3
    unlimited = gemini.RateLimiter.from_settings(gemini.GeminiSettings(rpm=None))
    asyncio.run(unlimited.acquire())
    assert unlimited.limit is None and unlimited.waited_s == 0.0


def test_parse_answer_prefers_parsed_then_tolerant_extraction() -> None:
    from pydantic import ValidationError

    from poemlib.schema import JSONExtractionError

    assert gemini.parse_answer("ignored", parsed={"create_condition": True, **POEM}).poem_title == "秋池"
    fenced = "好的：\n```json\n" + json.dumps(POEM, ensure_ascii=False) + "\n```\n希望喜欢"
    assert gemini.parse_answer(fenced).create_condition is True  # missing create_condition means a poem
    embedded = "答案 " + json.dumps({"create_condition": False, "poem_type": None, "poem_title": None, "poem_content": "图表", "poem_explanation": "不宜"}, ensure_ascii=False) + " 完"
    assert gemini.parse_answer(embedded).create_condition is False
    with pytest.raises(JSONExtractionError, match="JSON"):
        gemini.parse_answer("没有 JSON")
    with pytest.raises(ValidationError, match="poem_type"):
        gemini.parse_answer(json.dumps({**POEM, "poem_type": "古风"}, ensure_ascii=False))
