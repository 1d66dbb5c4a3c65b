"""Replay through the real google-genai SDK: recorded answers for known photos, exact or perceptual match."""

from __future__ import annotations

import base64
import io

import pytest
from google.genai import types

from poemlib.images import bytes_sha256, encode_jpeg, file_sha256, prepare_image
from poemlib.offline.gemini import (
    UNKNOWN_IMAGE_ANNOTATION,
    count_image_tokens,
    count_text_tokens,
)
from poemlib.offline.gemini.wire import ApiError, read_conversation
from poemlib.samples import draft_annotations, reference_annotations, sample_images
from poemlib.schema import Annotation, parse_annotation_text
from tests.offline.gemini_server_support import (
    JSON_CONFIG,
    MODEL,
    PHOTO,
    PHOTO_BYTES,
    PHOTO_SHA,
    POEM,
    SYSTEM,
    ask,
    client_for,
    contents,
    server_factory,
    unknown_image,
)


@pytest.fixture()
def make_server():
    """Start servers over the test references; all are stopped at teardown."""
    yield from server_factory()


def test_replay_raw_bytes_returns_the_reference(make_server):
    server = make_server()
    response = ask(client_for(server))
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert Annotation.model_validate_json(response.text) == POEM
    usage = response.usage_metadata
    assert usage.prompt_token_count > 258 and usage.candidates_token_count > 0 and usage.thoughts_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    assert response.model_version == MODEL and response.response_id
    assert server.stats.requests == 1 and server.stats.by_digest[PHOTO_SHA] == 1 and server.stats.by_outcome["ok"] == 1


@pytest.mark.parametrize(("max_pixels", "quality"), [(60_000, 70), (250_000, 90), (12_000, 50)])
def test_replay_matches_a_downscaled_reencoded_photo(make_server, max_pixels, quality):
    server = make_server()
    sent = encode_jpeg(prepare_image(PHOTO, max_pixels), quality)
    assert bytes_sha256(sent) != PHOTO_SHA
    response = ask(client_for(server), sent)
    assert parse_annotation_text(response.text) == POEM
    assert server.stats.by_digest == {PHOTO_SHA: 1}  # counted under the reference photo's identity


def test_unknown_image_gets_a_polite_unfit_answer(make_server):
    server = make_server()
    response = ask(client_for(server), unknown_image())
    answer = parse_annotation_text(response.text)
    assert answer == UNKNOWN_IMAGE_ANNOTATION
    assert answer.create_condition is False and answer.poem_type is None and answer.poem_title is None
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer.poem_content)
    assert server.stats.by_outcome == {"unfit": 1}


def test_plain_text_mime_type_answers_in_a_json_fence(make_server):
    server = make_server()
    response = ask(client_for(server), config=types.GenerateContentConfig(system_instruction=SYSTEM))
    assert response.text.startswith("```json") and parse_annotation_text(response.text) == POEM


def test_implicit_cache_reports_the_repeated_system_instruction(make_server):
    client = client_for(make_server())
    first, second = ask(client), ask(client)
    assert first.usage_metadata.cached_content_token_count is None
    assert second.usage_metadata.cached_content_token_count == count_text_tokens(SYSTEM)
    assert second.usage_metadata.cached_content_token_count < second.usage_metadata.prompt_token_count


def test_uploaded_file_reference_is_replayed(make_server):
    client = client_for(make_server())
    uploaded = client.files.upload(file=io.BytesIO(PHOTO_BYTES), config={"mime_type": "image/jpeg", "display_name": "photo"})
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == len(PHOTO_BYTES) and uploaded.display_name == "photo"
    response = client.models.generate_content(
        model=MODEL, contents=[types.Part.from_uri(file_uri=uploaded.uri, mime_type="image/jpeg"), "作诗"], config=JSON_CONFIG
    )
    assert Annotation.model_validate_json(response.text) == POEM
    assert client.files.get(name=uploaded.name).sha256_hash and [f.name for f in client.files.list()] == [uploaded.name]


def test_default_references_replay_every_sample_photo(gemini_replay_server):
    """Each sample photo, downscaled and re-encoded as a client sends it, gets its own recording: its flawed draft
    first when it has one (every fit photo), else its reference (the unfit ones)."""
    refs, drafts = reference_annotations(), draft_annotations()
    client = client_for(gemini_replay_server)
    photos = [p for p in sample_images() if file_sha256(p) in refs]
    assert len(photos) == len(refs) and set(drafts) == {sha for sha, ann in refs.items() if ann.create_condition}
    for photo in photos:
        sent = encode_jpeg(prepare_image(photo, 150_000), 80)
        sha = file_sha256(photo)
        assert parse_annotation_text(ask(client, sent).text) == drafts.get(sha, refs[sha]), photo.name
    assert gemini_replay_server.stats.by_digest == {file_sha256(p): 1 for p in photos}


# ---------------------------------------------------------------------------
# The other model endpoints
# ---------------------------------------------------------------------------


def test_stream_answers_the_whole_reference_in_one_chunk(make_server):
    server = make_server()
    client = client_for(server)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=contents(PHOTO_BYTES), config=JSON_CONFIG))
    assert len(chunks) == 1 and Annotation.model_validate_json(chunks[0].text) == POEM
    assert server.stats.by_endpoint == {"streamGenerateContent": 1} and server.stats.requests == 1


def test_count_tokens_agrees_with_the_usage_of_an_answer(make_server):
    client = client_for(make_server())
    counted = client.models.count_tokens(model=MODEL, contents=contents(PHOTO_BYTES))
    expected = count_image_tokens(prepare_image(PHOTO, 10**9).size) + count_text_tokens("请为这张照片作一首诗。")
    assert counted.total_tokens == expected
    answered = client.models.generate_content(model=MODEL, contents=contents(PHOTO_BYTES))
    assert answered.usage_metadata.prompt_token_count == counted.total_tokens


def test_model_resource(make_server):
    client = client_for(make_server())
    model = client.models.get(model=MODEL)
    assert model.name == f"models/{MODEL}" and model.display_name == MODEL and model.input_token_limit == 1048576


# ---------------------------------------------------------------------------
# The conversation a request carries (what replay decides on)
# ---------------------------------------------------------------------------


def test_read_conversation_keeps_turns_roles_and_images():
    image = base64.b64encode(PHOTO_BYTES).decode()
    body = {
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [
            {"role": "user", "parts": [{"inlineData": {"mimeType": "image/jpeg", "data": image}}, {"text": "作诗"}]},
            {"role": "model", "parts": [{"text": "{\"poem_content\": \"初稿\"}"}]},
            {"role": "user", "parts": [{"text": "第二句第二字应平"}]},
        ],
    }
    conversation = read_conversation(body, lambda _file_id: None)
    assert conversation.system_text == SYSTEM and conversation.images == (PHOTO_BYTES,)
    assert [(t.role, t.text) for t in conversation.turns] == [("user", "作诗"), ("model", "{\"poem_content\": \"初稿\"}"), ("user", "第二句第二字应平")]
    assert conversation.model_turns == 1 and conversation.user_text == "作诗{\"poem_content\": \"初稿\"}第二句第二字应平"


def test_read_conversation_names_what_is_missing():
    with pytest.raises(ApiError) as info:
        read_conversation({"generationConfig": {}}, lambda _file_id: None)
    assert info.value.answer.status == 400 and "contents is not specified" in info.value.answer.body["error"]["message"]
    uri_only = {"contents": [{"parts": [{"fileData": {"fileUri": "http://x/v1beta/files/abc123", "mimeType": "image/jpeg"}}]}]}
    with pytest.raises(ApiError) as info:
        read_conversation(uri_only, lambda _file_id: None)
    assert info.value.answer.status == 403 and "File abc123" in info.value.answer.body["error"]["message"]
