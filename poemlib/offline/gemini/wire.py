"""Gemini REST JSON shapes: field lookup in either spelling, answers and google.rpc errors, request conversations."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_REQUEST_BYTES = 20 * 1024 * 1024  # Gemini's limit for a request with inline data

GRPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}
API_KEY_INVALID_MESSAGE = "API key not valid. Please pass a valid API key."
NO_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
BAD_IMAGE_MESSAGE = "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
SAFETY_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


def get_field(obj: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """First present key among camelCase/snake_case spellings."""
    if not isinstance(obj, Mapping):
        return default
    for name in names:
        if name in obj:
            return obj[name]
    return default


def now_rfc3339() -> str:
    """The current UTC time as Gemini writes timestamps (microseconds, 'Z')."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def b64decode(data: str) -> bytes:
    """Decode standard or URL-safe base64 (the SDK sends URL-safe), padding optional."""
    data = data.strip().replace("-", "+").replace("_", "/")
    data += "=" * (-len(data) % 4)
    return base64.b64decode(data, validate=False)


# ---------------------------------------------------------------------------
# Answers and errors
# ---------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer: status, JSON body (or an HTML string), the outcome counted in stats, headers, delay."""

    status: int
    body: dict[str, Any] | list[Any] | str
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # extra wait before answering (slow fault)


def error_answer(
    code: int,
    status: str,
    message: str,
    outcome: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """A google.rpc.Status error body as Gemini sends it: {"error": {code, message, status, details?}}."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return Answer(code, {"error": error}, outcome, headers or {})


def bad_request(message: str, outcome: str = "bad_request") -> Answer:
    """HTTP 400 INVALID_ARGUMENT."""
    return error_answer(400, "INVALID_ARGUMENT", message, outcome)


class ApiError(Exception):
    """An error answer raised from deep inside request handling."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body)
        self.answer = answer


def to_response(answer: Answer) -> Any:
    """The starlette Response for an answer (JSON, or HTML for a string body)."""
    from starlette.responses import Response

    if isinstance(answer.body, str):
        return Response(answer.body, status_code=answer.status, headers=answer.headers, media_type="text/html; charset=UTF-8")
    payload = json.dumps(answer.body, ensure_ascii=False, indent=2).encode("utf-8")
    return Response(payload, status_code=answer.status, headers=answer.headers, media_type="application/json; charset=UTF-8")


def rpc_status(answer: Answer) -> dict[str, Any]:
    """An error answer as a per-request google.rpc.Status (what a batch result carries)."""
    if isinstance(answer.body, dict) and "error" in answer.body:
        err = answer.body["error"]
        return {"code": GRPC_CODES.get(err["status"], 2), "message": err["message"]}
    return {"code": 13, "message": "Internal error encountered."}


def model_resource(model: str) -> dict[str, Any]:
    """The `GET models/{model}` resource."""
    return {
        "name": f"models/{model}",
        "version": "2.5",
        "displayName": model,
        "description": "Loopback stand-in for the Gemini API",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


# ---------------------------------------------------------------------------
# Requests: the conversation a GenerateContentRequest carries
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One content of the request: its role ('user' or 'model') and its text parts joined."""

    role: str
    text: str


@dataclass(frozen=True)
class Conversation:
    """What a model call was sent: system text, every content's text, the turns in order and the image bytes."""

    system_text: str
    user_text: str  # the text of every content joined (what the prompt token count covers)
    turns: tuple[Turn, ...]
    images: tuple[bytes, ...]

    @property
    def model_turns(self) -> int:
        """How many earlier answers of the model the request carries (0 for a first request)."""
        return sum(1 for turn in self.turns if turn.role == "model")


FileLookup = Callable[[str], tuple[str, bytes] | None]  # file id -> (mime type, bytes) or None


def _contents(body: Mapping[str, Any]) -> list[Any]:
    contents = get_field(body, "contents")
    if contents is None:
        raise ApiError(bad_request("* GenerateContentRequest.contents: contents is not specified\n"))
    return [contents] if isinstance(contents, Mapping) else list(contents)


def _system_text(body: Mapping[str, Any]) -> str:
    system = get_field(body, "systemInstruction", "system_instruction")
    if isinstance(system, Mapping):
        return "".join(str(get_field(p, "text", default="") or "") for p in get_field(system, "parts", default=None) or [])
    return system if isinstance(system, str) else ""


def _part_image(part: Mapping[str, Any], lookup_file: FileLookup) -> bytes | None:
    """The image bytes of one part (inline data or an uploaded file), None for a non-image part."""
    inline = get_field(part, "inlineData", "inline_data")
    if isinstance(inline, Mapping):
        mime = str(get_field(inline, "mimeType", "mime_type", default=""))
        try:
            data = b64decode(str(get_field(inline, "data", default="")))
        except (ValueError, TypeError):
            raise ApiError(bad_request("Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), Base64 decoding failed")) from None
        return data if mime.startswith("image/") or not mime else None
    file_data = get_field(part, "fileData", "file_data")
    if isinstance(file_data, Mapping):
        uri = str(get_field(file_data, "fileUri", "file_uri", default=""))
        file_id = uri.rsplit("files/", 1)[-1].split("?")[0].split(":")[0]
        stored = lookup_file(file_id)
        if stored is None:
            message = f"You do not have permission to access the File {file_id} or it may not exist."
            raise ApiError(error_answer(403, "PERMISSION_DENIED", message, "bad_request"))
        mime, data = stored
        return data if mime.startswith("image/") else None
    return None


def read_conversation(body: Mapping[str, Any], lookup_file: FileLookup) -> Conversation:
    """The conversation of a GenerateContentRequest (or countTokens); raises ApiError for a malformed one."""
    turns: list[Turn] = []
    images: list[bytes] = []
    for content in _contents(body):
        parts = [p for p in get_field(content, "parts", default=None) or [] if isinstance(p, Mapping)]
        for part in parts:
            image = _part_image(part, lookup_file)
            if image is not None:
                images.append(image)
        text = "".join(str(get_field(p, "text", default="") or "") for p in parts)
        turns.append(Turn(str(get_field(content, "role", default="user") or "user"), text))
    user_text = "".join(turn.text for turn in turns)
    return Conversation(_system_text(body), user_text, tuple(turns), tuple(images))
