"""The endpoint handlers and the route table mapping (method, path pattern) to them.

Paths are those google-genai calls for the Gemini Developer API, under any ``v1*`` version segment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from poemlib.offline.gemini.batches import BatchQueue
from poemlib.offline.gemini.files import FileStore, file_not_found
from poemlib.offline.gemini.generate import Responder
from poemlib.offline.gemini.stats import StatsBook
from poemlib.offline.gemini.wire import (
    API_KEY_INVALID_MESSAGE,
    NO_KEY_MESSAGE,
    Answer,
    ApiError,
    bad_request,
    error_answer,
    get_field,
    model_resource,
    to_response,
)


class ServerContext(Protocol):
    """What the handlers use of the server (`server.GeminiServer` provides it)."""

    valid_keys: frozenset[str] | None
    max_request_bytes: int
    latency_s: float
    responder: Responder
    stats_book: StatsBook
    batches: BatchQueue
    files: FileStore

    @property
    def base_url(self) -> str: ...

    async def pause(self, seconds: float) -> None: ...


Handler = Callable[[ServerContext, Any, dict[str, str]], Awaitable[Any]]
UPLOAD_CHUNK_GRANULARITY = 8 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """One endpoint: HTTP method, full-path pattern, handler; `endpoint` is counted and the key checked first
    (`endpoint=None`: the handler counts and checks for itself)."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    endpoint: str | None = None


def check_key(request: Any, valid_keys: frozenset[str] | None) -> None:
    """Gemini's answers to a missing key (403) or an unknown one (400 API_KEY_INVALID), when keys are checked."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if valid_keys is None:
        return
    if not key:
        raise ApiError(error_answer(403, "PERMISSION_DENIED", NO_KEY_MESSAGE, "auth"))
    if key not in valid_keys:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": API_KEY_INVALID_MESSAGE},
        ]
        raise ApiError(error_answer(400, "INVALID_ARGUMENT", API_KEY_INVALID_MESSAGE, "auth", details))


async def read_json(request: Any, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); ApiError 400 when too large or not a JSON object."""
    body = await request.body()
    if len(body) > max_bytes:
        raise ApiError(bad_request(f"Request payload size exceeds the limit: {max_bytes} bytes.", "too_large"))
    if not body:
        return {}
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(bad_request(f"Invalid JSON payload received. {exc}")) from None
    if not isinstance(obj, dict):
        raise ApiError(bad_request("Invalid JSON payload received. Expected an object."))
    return obj


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


async def _answer_model_call(server: ServerContext, request: Any, model: str) -> Answer:
    """Key check, body, the answer and its outcome count, then the latency (and slow fault) wait."""
    try:
        check_key(request, server.valid_keys)
        answer = server.responder.generate(model, await read_json(request, server.max_request_bytes))
    except ApiError as exc:
        answer = exc.answer
    server.stats_book.outcome(answer.outcome)
    wait = server.latency_s + answer.delay_s
    if wait > 0:
        await server.pause(wait)
    return answer


async def generate_content(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`:generateContent` and `:streamGenerateContent` (the whole answer as one SSE chunk or a one-item array)."""
    from starlette.responses import Response

    stream = params["verb"] == "streamGenerateContent"
    server.stats_book.model_call_started(params["verb"])
    try:
        answer = await _answer_model_call(server, request, params["model"])
        if stream and answer.status == 200 and isinstance(answer.body, dict):
            if request.query_params.get("alt") == "sse":
                payload = "data: " + json.dumps(answer.body, ensure_ascii=False) + "\r\n\r\n"
                return Response(payload.encode("utf-8"), media_type="text/event-stream")
            answer = Answer(200, [answer.body], answer.outcome)
        return to_response(answer)
    finally:
        server.stats_book.model_call_finished()


async def count_tokens(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`:countTokens`."""
    return to_response(server.responder.count_tokens(await read_json(request, server.max_request_bytes)))


async def get_model(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET models/{model}`."""
    return to_response(Answer(200, model_resource(params["model"]), "ok"))


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


async def create_batch(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`:batchGenerateContent`."""
    return to_response(server.batches.create(params["model"], await read_json(request, server.max_request_bytes)))


async def list_batches(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET batches`."""
    return to_response(server.batches.listing(request.query_params))


async def get_batch(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET batches/{id}` (a poll)."""
    return to_response(server.batches.get(params["id"]))


async def cancel_batch(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`POST batches/{id}:cancel`."""
    return to_response(server.batches.cancel(params["id"]))


async def delete_batch(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`DELETE batches/{id}`."""
    return to_response(server.batches.delete(params["id"]))


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


async def list_files(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET files`."""
    return to_response(Answer(200, {"files": server.files.listing()}, "ok"))


async def get_file(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET files/{id}`: the file resource."""
    stored = server.files.get(params["id"])
    if stored is None:
        raise ApiError(file_not_found(params["id"]))
    return to_response(Answer(200, stored.meta, "ok"))


async def download_file(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`GET files/{id}:download`: the bytes."""
    from starlette.responses import Response

    stored = server.files.get(params["id"])
    if stored is None:
        raise ApiError(file_not_found(params["id"]))
    return Response(stored.data, media_type=stored.meta.get("mimeType") or "application/octet-stream")


async def delete_file(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """`DELETE files/{id}`."""
    if not server.files.delete(params["id"]):
        raise ApiError(file_not_found(params["id"]))
    return to_response(Answer(200, {}, "ok"))


async def _start_upload(server: ServerContext, request: Any, command: str) -> Any:
    """`x-goog-upload-command: start`: open a session and hand out its upload URL."""
    from starlette.responses import Response

    server.stats_book.endpoint("files.upload.start")
    check_key(request, server.valid_keys)
    if request.headers.get("x-goog-upload-protocol", "").lower() != "resumable" or "start" not in command:
        return to_response(bad_request("Only the resumable upload protocol is supported here."))
    file_meta = get_field(await read_json(request, server.max_request_bytes), "file") or {}
    size = request.headers.get("x-goog-upload-header-content-length")
    mime = request.headers.get("x-goog-upload-header-content-type") or get_field(file_meta, "mimeType", "mime_type") or "application/octet-stream"
    name = str(get_field(file_meta, "name", default="") or "").removeprefix("files/") or None
    display_name = get_field(file_meta, "displayName", "display_name", default="") or ""
    session_id = server.files.open_upload(name, mime, display_name, int(size) if size and size.isdigit() else None)
    url = f"{server.base_url}/upload/v1beta/files?upload_id={quote(session_id)}&upload_protocol=resumable"
    headers = {"x-goog-upload-url": url, "x-goog-upload-status": "active", "x-goog-upload-chunk-granularity": str(UPLOAD_CHUNK_GRANULARITY)}
    return Response(b"", headers=headers)


async def _upload_chunk(server: ServerContext, request: Any, session_id: str, command: str) -> Any:
    """`query`, `upload` and `finalize` commands on an open session; finalize stores the file."""
    from starlette.responses import Response

    server.stats_book.endpoint("files.upload.chunk")
    session = server.files.uploads.get(session_id)
    if session is None:
        return Response(b"Unknown upload id", status_code=404, headers={"x-goog-upload-status": "final"}, media_type="text/plain")
    data = await request.body()
    if "query" in command:
        return Response(b"", headers={"x-goog-upload-status": "active", "x-goog-upload-size-received": str(len(session.buffer))})
    if "upload" in command:
        offset = int(request.headers.get("x-goog-upload-offset", len(session.buffer)))
        if offset != len(session.buffer):
            return to_response(bad_request(f"Upload offset {offset} != received {len(session.buffer)}"))
        session.buffer.extend(data)
    if "finalize" not in command:
        return Response(b"", headers={"x-goog-upload-status": "active"})
    server.files.close_upload(session_id)
    if session.expected is not None and session.expected != len(session.buffer):
        return to_response(bad_request(f"Uploaded {len(session.buffer)} bytes, announced {session.expected}"))
    meta = server.files.store(session.file_id, bytes(session.buffer), session.mime, display_name=session.display_name)
    payload = json.dumps({"file": meta}, ensure_ascii=False).encode("utf-8")
    return Response(payload, headers={"x-goog-upload-status": "final"}, media_type="application/json; charset=UTF-8")


async def upload(server: ServerContext, request: Any, params: dict[str, str]) -> Any:
    """The resumable upload protocol: `start` hands out an upload URL; chunks then `upload, finalize` to it."""
    command = request.headers.get("x-goog-upload-command", "").lower()
    session_id = request.query_params.get("upload_id")
    if session_id is None:
        return await _start_upload(server, request, command)
    return await _upload_chunk(server, request, session_id, command)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

_V = r"/(?:v1[a-z0-9]*)"
_MODEL = rf"{_V}/(?:models|tunedModels)/(?P<model>[^/:]+)"
_BATCH = rf"{_V}/batches/(?P<id>[^/:]+)"
_FILE = rf"(?:/download)?{_V}/files/(?P<id>[^/:]+)"


def _route(method: str, pattern: str, handler: Handler, endpoint: str | None = None) -> Route:
    return Route(method, re.compile(pattern), handler, endpoint)


ROUTES: tuple[Route, ...] = (
    _route("POST", rf"{_MODEL}:(?P<verb>generateContent|streamGenerateContent)", generate_content),
    _route("POST", rf"{_MODEL}:countTokens", count_tokens, "countTokens"),
    _route("POST", rf"{_MODEL}:batchGenerateContent", create_batch, "batchGenerateContent"),
    _route("GET", rf"{_V}/models/(?P<model>[^/:]+)", get_model, "models.get"),
    _route("GET", rf"{_V}/batches", list_batches, "batches.list"),
    _route("GET", _BATCH, get_batch, "batches.get"),
    _route("POST", rf"{_BATCH}:cancel", cancel_batch, "batches.cancel"),
    _route("DELETE", _BATCH, delete_batch, "batches.delete"),
    _route("POST", rf"/upload{_V}/files", upload),
    _route("GET", rf"{_V}/files", list_files, "files.list"),
    _route("GET", rf"{_FILE}:download", download_file, "files.download"),
    _route("GET", _FILE, get_file, "files.get"),
    _route("DELETE", _FILE, delete_file, "files.delete"),
)


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for this method and path, with the path's named parts; None when no endpoint answers it."""
    for route in ROUTES:
        if route.method == method and (match := route.pattern.fullmatch(path)):
            return route, match.groupdict()
    return None
