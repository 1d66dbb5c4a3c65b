"""The Batch API through the SDK: inlined requests and JSONL files, polling, per-request errors, cancel and delete."""

from __future__ import annotations

import base64
import io
import json

import pytest
from google.genai import errors, types

from poemlib.images import encode_jpeg, prepare_image
from poemlib.offline.gemini import UNKNOWN_IMAGE_ANNOTATION
from poemlib.schema import Annotation, parse_annotation_text
from tests.offline.gemini_server_support import (
    MODEL,
    PHOTO,
    PHOTO_BYTES,
    POEM,
    SYSTEM,
    client_for,
    server_factory,
    unknown_image,
)


@pytest.fixture()
def make_server():
    """Start servers over the test references; all are stopped at teardown."""
    yield from server_factory()


def _inlined(image: bytes, key: str) -> dict:
    return {
        "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/jpeg", "data": image}}, {"text": "作诗"}]}],
        "config": {"system_instruction": SYSTEM, "response_mime_type": "application/json"},
        "metadata": {"key": key},
    }


def test_batch_inline_create_poll_collect(make_server):
    server = make_server(script=["ok", "ok", "429"], batch_polls_until_done=2)
    client = client_for(server)
    sent = encode_jpeg(prepare_image(PHOTO, 60_000), 80)
    src = [_inlined(sent, "a"), _inlined(unknown_image(), "b"), _inlined(PHOTO_BYTES, "c")]
    job = client.batches.create(model=MODEL, src=src, config={"display_name": "poems"})
    assert job.name.startswith("batches/") and job.state == types.JobState.JOB_STATE_PENDING and job.display_name == "poems"
    states = []
    while True:
        job = client.batches.get(name=job.name)
        states.append(job.state)
        if job.state == types.JobState.JOB_STATE_SUCCEEDED:
            break
        assert len(states) < 5
    assert states == [types.JobState.JOB_STATE_RUNNING, types.JobState.JOB_STATE_SUCCEEDED]
    a, b, c = job.dest.inlined_responses
    assert [r.metadata for r in (a, b, c)] == [{"key": "a"}, {"key": "b"}, {"key": "c"}]
    assert Annotation.model_validate_json(a.response.text) == POEM and a.error is None
    assert parse_annotation_text(b.response.text).create_condition is False
    assert c.response is None and c.error.code == 8  # RESOURCE_EXHAUSTED as a per-request google.rpc.Status
    assert "exceeded your current quota" in c.error.message
    assert server.stats.batch_requests == 3 and server.stats.requests == 0
    assert server.stats.by_outcome == {"ok": 1, "unfit": 1, "429": 1}
    assert server.stats.by_endpoint["batches.get"] == 2

    assert job.name in [j.name for j in client.batches.list()]
    other = client.batches.create(model=MODEL, src=src[:1])
    client.batches.cancel(name=other.name)
    assert client.batches.get(name=other.name).state == types.JobState.JOB_STATE_CANCELLED
    client.batches.delete(name=other.name)
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=other.name)
    assert info.value.code == 404 and other.name in info.value.message


def test_batch_from_an_uploaded_jsonl_file(make_server):
    server = make_server(batch_polls_until_done=1)
    client = client_for(server)
    lines = [
        {
            "key": key,
            "request": {
                "contents": [{"parts": [{"inline_data": {"mime_type": "image/jpeg", "data": base64.b64encode(img).decode()}}, {"text": "作诗"}]}],
                "generation_config": {"response_mime_type": "application/json"},
            },
        }
        for key, img in (("known", PHOTO_BYTES), ("unknown", unknown_image()))
    ]
    payload = "".join(json.dumps(line) + "\n" for line in lines).encode() + b"not json\n"
    uploaded = client.files.upload(file=io.BytesIO(payload), config={"mime_type": "application/jsonl", "display_name": "batch-input"})
    job = client.batches.create(model=MODEL, src=uploaded.name)
    job = client.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest.file_name
    results = [json.loads(line) for line in client.files.download(file=job.dest.file_name).decode().splitlines()]
    by_key = {r["key"]: r for r in results if "key" in r}
    known = types.GenerateContentResponse.model_validate(by_key["known"]["response"])
    assert Annotation.model_validate_json(known.text) == POEM
    unknown = types.GenerateContentResponse.model_validate(by_key["unknown"]["response"])
    assert Annotation.model_validate_json(unknown.text) == UNKNOWN_IMAGE_ANNOTATION
    assert results[2] == {"error": {"code": 3, "message": "line 3: invalid JSON: Expecting value: line 1 column 1 (char 0)"}}


def test_batch_naming_a_missing_file_is_refused(make_server):
    client = client_for(make_server())
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model=MODEL, src="files/nosuchfile")
    assert info.value.code == 403 and "File nosuchfile" in info.value.message
