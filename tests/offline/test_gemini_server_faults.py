"""Faults as the google-genai SDK sees them: scripted, per image or seeded; HTTP errors and spoiled answers."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from google.genai import errors, types

from poemlib.images import encode_jpeg, prepare_image
from poemlib.offline.gemini import (
    ALL_FAULTS,
    API_KEY_INVALID_MESSAGE,
    FaultPlan,
    GeminiServer,
)
from poemlib.offline.gemini.faults import PROSE_ANSWER
from poemlib.schema import (
    Annotation,
    JSONExtractionError,
    extract_json_object,
    parse_annotation_text,
)
from tests.offline.gemini_server_support import (
    MODEL,
    PHOTO,
    PHOTO_SHA,
    POEM,
    REFERENCES,
    ask,
    client_for,
    server_factory,
    unknown_image,
)


@pytest.fixture()
def make_server():
    """Start servers over the test references; all are stopped at teardown."""
    yield from server_factory()


@pytest.fixture(scope="module")
def shared():
    """One server whose script each fault test extends (fast: no start/stop per kind)."""
    with GeminiServer(references=REFERENCES, reference_images=[PHOTO], retry_after_s=2, slow_s=2.0) as server:
        yield server


@pytest.fixture(scope="module")
def shared_client(shared):
    return client_for(shared)


def test_fault_429_carries_retry_after(shared, shared_client):
    shared.plan.extend_script(["429"])
    with pytest.raises(errors.ClientError) as info:
        ask(shared_client)
    exc = info.value
    assert exc.code == 429 and exc.status == "RESOURCE_EXHAUSTED"
    assert exc.response.headers["retry-after"] == "2"  # httpx.Response (sync client)
    retry_info = [d for d in exc.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry_info[0]["retryDelay"] == "2s"
    assert Annotation.model_validate_json(ask(shared_client).text) == POEM  # the script is spent: next is fine


@pytest.mark.parametrize(("kind", "status", "says"), [("500", "INTERNAL", "internal error"), ("503", "UNAVAILABLE", "overloaded")])
def test_fault_5xx_raises_server_error(shared, shared_client, kind, status, says):
    shared.plan.extend_script([kind])
    with pytest.raises(errors.ServerError) as info:
        ask(shared_client)
    assert info.value.code == int(kind) and info.value.status == status and says in info.value.message
    assert Annotation.model_validate_json(ask(shared_client).text) == POEM


def test_fault_non_json_is_prose(shared, shared_client):
    shared.plan.extend_script(["non_json"])
    response = ask(shared_client)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP and response.text == PROSE_ANSWER
    with pytest.raises(JSONExtractionError):
        extract_json_object(response.text)


def test_fault_safety(shared, shared_client):
    shared.plan.extend_script(["safety"])
    response = ask(shared_client)
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.SAFETY and response.text is None
    assert any(r.blocked for r in candidate.safety_ratings)


def test_fault_max_tokens_truncates_the_json(shared, shared_client):
    shared.plan.extend_script(["max_tokens"])
    response = ask(shared_client)
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    full = json.dumps(POEM.model_dump(mode="json"), ensure_ascii=False, indent=2)
    assert full.startswith(response.text) and len(response.text) < len(full)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_fault_blocked_prompt_has_no_candidates(shared, shared_client):
    shared.plan.extend_script(["blocked"])
    response = ask(shared_client)
    assert not response.candidates and response.text is None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert response.usage_metadata.thoughts_token_count is None  # blocked before any thinking


def test_fault_empty_answer(shared, shared_client):
    shared.plan.extend_script(["empty"])
    response = ask(shared_client)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP and response.text is None
    assert response.candidates[0].content.parts is None and response.usage_metadata.thoughts_token_count > 0


def test_fault_slow_exceeds_a_short_client_timeout_then_answers(shared, shared_client):
    impatient = client_for(shared, timeout_ms=300)
    shared.plan.extend_script(["slow"])  # the shared server's slow_s is 2 s
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        ask(impatient)
    assert time.monotonic() - started < 1.5
    shared.plan.extend_script(["slow"])
    started = time.monotonic()
    assert Annotation.model_validate_json(ask(shared_client).text) == POEM  # a patient client gets the answer
    assert time.monotonic() - started >= 2.0


def test_fault_bad_body_is_not_json_at_http_level(shared, shared_client):
    shared.plan.extend_script(["bad_body"])
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's response parsing
        ask(shared_client)
    shared.plan.extend_script(["bad_body"])
    body = {"contents": [{"parts": [{"text": "作诗"}]}]}
    reply = httpx.post(f"{shared.base_url}/v1beta/models/{MODEL}:generateContent", json=body, timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html") and "Bad Gateway" in reply.text


def test_script_covers_every_kind_in_order(shared, shared_client):
    shared.reset_stats()
    script = [k for k in ALL_FAULTS if k != "slow"] + ["ok"]
    shared.plan.extend_script(script)
    seen = []
    for _ in script:
        try:
            response = ask(shared_client)
            seen.append("blocked" if not response.candidates else str(response.candidates[0].finish_reason.name))
        except errors.APIError as exc:
            seen.append(str(exc.code))
    finish = {"non_json": "STOP", "safety": "SAFETY", "max_tokens": "MAX_TOKENS", "blocked": "blocked", "empty": "STOP", "ok": "STOP"}
    assert seen == [finish.get(kind, kind) for kind in script]
    assert dict(shared.stats.by_outcome) == {k: 1 for k in script} and shared.plan.script_remaining == 0


def test_fault_by_digest_applies_to_the_first_n_requests_of_an_image(make_server):
    server = make_server(fault_by_digest={PHOTO_SHA: "503*2"})
    client = client_for(server)
    sent = encode_jpeg(prepare_image(PHOTO, 60_000), 80)  # matched perceptually, so keyed by the file digest
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            ask(client, sent)
    assert Annotation.model_validate_json(ask(client, sent).text) == POEM
    assert parse_annotation_text(ask(client, unknown_image()).text).create_condition is False  # other images unaffected
    assert server.stats.by_outcome == {"503": 2, "ok": 1, "unfit": 1}


def test_random_faults_are_seeded(make_server):
    def outcomes(seed: int) -> list[str]:
        server = make_server(mode="faults", fault_rate=0.5, faults=("500", "503", "safety"), seed=seed)
        client = client_for(server)
        seen = []
        for _ in range(16):
            try:
                response = ask(client)
                seen.append(str(response.candidates[0].finish_reason))
            except errors.APIError as exc:
                seen.append(str(exc.code))
        return seen

    first = outcomes(7)
    assert first == outcomes(7)
    assert 2 <= sum(o != str(types.FinishReason.STOP) for o in first) <= 14
    assert set(first) <= {"500", "503", str(types.FinishReason.SAFETY), str(types.FinishReason.STOP)}


def test_fault_plan_rejects_unknown_kinds_by_name():
    with pytest.raises(ValueError, match="unknown fault kind 'teapot'"):
        FaultPlan(script=["ok", "teapot"])
    with pytest.raises(ValueError, match="bad fault rule '503\\*x'"):
        FaultPlan(fault_by_digest={PHOTO_SHA: "503*x"})
    with pytest.raises(ValueError, match="mode 'faults' needs"):
        GeminiServer(mode="faults", references={}, reference_images=[])


def test_invalid_key_gets_geminis_error(make_server):
    server = make_server(valid_keys={"good-key"})
    with pytest.raises(errors.ClientError) as info:
        ask(client_for(server, key="bad-key"))
    exc = info.value
    assert exc.code == 400 and exc.status == "INVALID_ARGUMENT" and exc.message == API_KEY_INVALID_MESSAGE
    assert exc.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert Annotation.model_validate_json(ask(client_for(server, key="good-key")).text) == POEM
    assert server.stats.by_outcome == {"auth": 1, "ok": 1}


def test_missing_key_is_permission_denied(make_server):
    server = make_server(valid_keys={"good-key"})
    reply = httpx.get(f"{server.base_url}/v1beta/batches", timeout=10)
    assert reply.status_code == 403 and reply.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "API Key" in reply.json()["error"]["message"]


def test_undecodable_image_is_rejected(make_server):
    server = make_server()
    with pytest.raises(errors.ClientError) as info:
        ask(client_for(server), b"\xff\xd8\xff\xe0 definitely not a jpeg")
    assert info.value.code == 400 and "Unable to process input image" in info.value.message
    assert server.stats.by_outcome == {"bad_image": 1}
