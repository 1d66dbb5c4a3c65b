"""A loopback HTTP server speaking the Gemini Developer API REST protocol, for the real `google-genai` client.

Point the SDK at it and every call goes over real HTTP, through the SDK's own request building and response parsing::

    with GeminiServer(mode="replay") as server:
        client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=server.base_url))
        client.models.generate_content(model="gemini-2.5-pro", contents=[image_part, "作诗"])

(or set ``GOOGLE_GEMINI_BASE_URL=server.base_url`` in the environment).

Endpoints (the paths google-genai 2.8.0 calls for the Gemini Developer API, any ``v1*`` version segment; see
`routes.ROUTES`):

* ``POST /v1beta/models/{model}:generateContent`` — ``:streamGenerateContent`` (one SSE chunk), ``:countTokens`` and
  ``GET /v1beta/models/{model}`` too.
* Batch API: ``POST /v1beta/models/{model}:batchGenerateContent``, ``GET /v1beta/batches``, ``GET /v1beta/batches/{id}``,
  ``POST /v1beta/batches/{id}:cancel``, ``DELETE /v1beta/batches/{id}`` — inlined requests and JSONL input files.
* Files API: resumable upload ``POST /upload/v1beta/files`` (+ the upload URL it hands out), ``GET/DELETE
  /v1beta/files/{id}``, ``GET /v1beta/files``, ``GET /v1beta/files/{id}:download?alt=media``; an uploaded image can be
  referenced from a request as ``fileData.fileUri``.

Answers: **replay** (`replay`) — the recorded annotation of a known image, matched (`matching`) by the
sha256 of the received image bytes or, because clients downscale and re-encode photos, by a 16×16 grayscale thumbnail
(EXIF-transposed) compared to every reference photo's; an unknown image gets a polite ``create_condition=false``
answer. **Revision** (`revision`) — a sample photo is first answered with our flawed draft (``first_answer="draft"``,
the default; ``"reference"`` answers the reference at once), and a revision request (the model's answer plus a further
user turn) gets the reference once its message names every violation of the draft (rule, character and 第N句), else
the draft again; `stats.revisions` logs each. **Forms** (`forms`) — a request for a 体裁/词牌 the recorded poem is
not gets the recorded poem with `poemlib.samples.replay_mismatch_note` opening its explanation. **Faults** (`faults`) — a per-request fault drawn from ``script`` (a queue), else ``fault_by_digest`` (per
image), else at random (``fault_rate``, ``seed``): see `FAULT_KINDS`. ``mode="faults"`` is ``"replay"`` plus faults;
faults from any source apply in either mode.

Modules: `server` (lifecycle, dispatch), `routes` (handlers and the route table), `generate` (one model call),
`replay`, `revision`, `forms`, `matching`, `faults`, `batches`, `files`, `tokens`, `stats`, `wire` (REST JSON shapes).
"""

from poemlib.offline.gemini.endpoint import gemini_endpoint
from poemlib.offline.gemini.faults import ALL_FAULTS, FAULT_KINDS, FaultPlan
from poemlib.offline.gemini.matching import DEFAULT_MATCH_THRESHOLD, ImageIndex
from poemlib.offline.gemini.replay import (
    FIRST_ANSWERS,
    UNKNOWN_IMAGE_ANNOTATION,
    Replay,
)
from poemlib.offline.gemini.server import GeminiServer, serve_forever
from poemlib.offline.gemini.stats import ServerStats
from poemlib.offline.gemini.tokens import count_image_tokens, count_text_tokens
from poemlib.offline.gemini.wire import API_KEY_INVALID_MESSAGE, MAX_REQUEST_BYTES

__all__ = [
    "ALL_FAULTS",
    "API_KEY_INVALID_MESSAGE",
    "DEFAULT_MATCH_THRESHOLD",
    "FAULT_KINDS",
    "FIRST_ANSWERS",
    "MAX_REQUEST_BYTES",
    "UNKNOWN_IMAGE_ANNOTATION",
    "FaultPlan",
    "GeminiServer",
    "ImageIndex",
    "Replay",
    "ServerStats",
    "count_image_tokens",
    "count_text_tokens",
    "gemini_endpoint",
    "serve_forever",
]
