"""Annotate photos with Gemini: versioned prompts, structured output, a durable store, throughput, cost, batch mode.

The store is an append-only JSONL file of `AnnotationRecord`s, one line per finished image, flushed and fsynced per
line (a torn last line from a crash is dropped before the next append). An image is known by the sha256 of its bytes:
the same photo under two names is requested once and its record lists both paths. A re-run annotates only images
without a final record. A record is final unless it is `failed` with a kind listed in `retry_on_rerun` (by default
rate_limited / server_error / timeout, i.e. retries exhausted, and api_error): those images are requested again by
the next run, which appends a new record. A photo that was already done and shows up under a new name gets its record
appended again with the extra path (no request). Readers (`load_store`) therefore keep the last line per image.
User images are only ever read.

Online runs (`online`): a pool of `concurrency` workers (one request in flight each), the shared Gemini layer's
sliding-window limiter (no `rate_window_s` window holds more than `rpm` HTTP requests) and its one retry path
(429/5xx/timeouts with exponential backoff and jitter that honour Retry-After / RetryInfo), and an immediate stop on a
rejected API key (`AnnotateAuthError`) so that a bad key does not fail 2,000 images. Batch runs (`--batch`,
`batch_submit` / `batch_collect`) submit Gemini Batch API jobs (inline requests, or an uploaded JSONL file for large
runs), remember them in ``STORE.jsonl.batch.json`` and collect their answers into the same store on a later run
(collection skips images that already have a final record, so collecting twice after a crash writes nothing twice).
A crash in the instant between a job's creation and the state file's update leaves that job orphaned: its images are
submitted again (billed twice, stored once).

Revision (`revise_rounds`, `--revise N`): an ok answer whose poem fails form, 平仄 or rhyme is answered, in the same
conversation, with a message naming every violation (revision: the versioned revise prompt, the message, the best
round; reviser: the online loop; rounds: rounds as records). Each finished round is appended as a record (the image
is not final while rounds remain and its poem still fails), so a killed run resumes the remaining rounds; the final
record's annotation is the best round, `first_answer` / `revisions` keep every round, `usage` sums them. Batch runs
send the revisions of a collected job's failing poems as a follow-up job.

Modules: config (AnnotateConfig), prompt, prepare (photos → JPEG), store, summary, session (run state and plan),
online, batch_state / batch_submit / batch_collect, cost, tables, single (one image, for other stages), client (the
run's key and client through `poemlib.gemini`), sync (running coroutines from Jupyter), api (sync entry points).

Entry points: `annotate_folder` (sync, also inside Jupyter), `annotate_folder_async`, `submit_batch`,
`collect_batch`, `cancel_batch`, `load_store`; `make_client` / `annotate_image` for other stages (the demo's backend).
"""

from poemlib.annotate.api import (
    annotate_folder,
    cancel_batch,
    collect_batch,
    submit_batch,
)
from poemlib.annotate.batch_collect import cancel_batch_async, collect_batch_async
from poemlib.annotate.batch_state import BatchJobState, BatchState, read_batch_state
from poemlib.annotate.batch_submit import submit_batch_async
from poemlib.annotate.client import make_client
from poemlib.annotate.config import (
    AnnotateConfig,
    BatchSettings,
    Prices,
    PromptSettings,
    load_annotate_config,
)
from poemlib.annotate.cost import cost_frame, usage_cost
from poemlib.annotate.errors import (
    AnnotateAuthError,
    AnnotateConfigError,
    AnnotateError,
    AnnotateRunError,
)
from poemlib.annotate.online import annotate_folder_async
from poemlib.annotate.prepare import image_to_jpeg, prepare_for_gemini
from poemlib.annotate.prompt import (
    PROMPTS_DIR,
    Prompt,
    generation_config,
    load_prompt,
    rest_request,
)
from poemlib.annotate.reviser import Reviser
from poemlib.annotate.revision import (
    RevisePrompt,
    best_round,
    load_revise_prompt,
    meter_summary,
    needs_revision,
    revision_message,
)
from poemlib.annotate.rounds import next_message
from poemlib.annotate.single import annotate_image
from poemlib.annotate.store import (
    ImageEntry,
    Scan,
    batch_state_path,
    is_final,
    iter_store,
    load_store,
    scan_images,
)
from poemlib.annotate.summary import RunSummary
from poemlib.annotate.sync import run_sync
from poemlib.annotate.tables import (
    poems_html,
    revised_records,
    revision_frame,
    revision_html,
    revision_summary,
    store_frame,
)
from poemlib.gemini import DEFAULT_ENDPOINT, OFFLINE_API_KEY, resolve_api_key

__all__ = [
    "DEFAULT_ENDPOINT",
    "OFFLINE_API_KEY",
    "PROMPTS_DIR",
    "AnnotateAuthError",
    "AnnotateConfig",
    "AnnotateConfigError",
    "AnnotateError",
    "AnnotateRunError",
    "BatchJobState",
    "BatchSettings",
    "BatchState",
    "ImageEntry",
    "Prices",
    "Prompt",
    "PromptSettings",
    "RevisePrompt",
    "Reviser",
    "RunSummary",
    "Scan",
    "annotate_folder",
    "annotate_folder_async",
    "annotate_image",
    "batch_state_path",
    "best_round",
    "cancel_batch",
    "cancel_batch_async",
    "collect_batch",
    "collect_batch_async",
    "cost_frame",
    "generation_config",
    "image_to_jpeg",
    "is_final",
    "iter_store",
    "load_annotate_config",
    "load_prompt",
    "load_revise_prompt",
    "load_store",
    "make_client",
    "meter_summary",
    "needs_revision",
    "next_message",
    "poems_html",
    "prepare_for_gemini",
    "read_batch_state",
    "resolve_api_key",
    "rest_request",
    "revised_records",
    "revision_frame",
    "revision_html",
    "revision_message",
    "revision_summary",
    "run_sync",
    "scan_images",
    "store_frame",
    "submit_batch",
    "submit_batch_async",
    "usage_cost",
]
