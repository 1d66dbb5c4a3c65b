"""Merge, dedupe, 格律-check and count annotation stores and legacy shards in one call.

`clean(inputs, out, report)` reads any mix of

* our JSONL stores: one `AnnotationRecord` per line; within one store several lines may name the same
  image (a re-run appends a newer record after a transient failure) and the **last line wins**;
* the seed project's legacy shards: a JSON list (or a JSON object holding the list, or JSONL) of
  ``{"generated_content": {...}, "total_token_count": int, "image_path": "Train\\\\12.jpg"}``;

detects the format of every file by itself, converts legacy records to our schema, dedupes by image
identity, meter-checks the survivors, writes the records eligible for training to ``out`` and every
other record (with its reasons) to ``rejected`` so that nothing is lost, and saves a count report.

Count definitions (also written into every report under ``definitions``)
------------------------------------------------------------------------
records_read
    Records parsed from all inputs and valid in our schema after legacy conversion: ok, unfit and
    failed alike, superseded store lines included. Malformed records are *not* counted here.
malformed
    Records that could not be read or made schema-valid: not an object, no image path, a JSON answer
    that does not fit the schema (e.g. an unknown 体裁), a broken JSONL line. Each is listed with its file,
    its ``index`` (0-based position in a JSON list) or ``line`` (1-based line of a JSONL file) and the
    reason. A JSON list that breaks off mid-file counts one malformed entry at the first unreadable element.
superseded_in_store
    Lines of one of *our* stores replaced by a later line for the same image in the same store
    (annotate's retry semantics). They take no part in dedupe.
candidates
    ``records_read - superseded_in_store``: the records that compete for an image.
distinct_images
    Distinct image identities among the candidates. Identity is ``sha256:<digest of the bytes>`` when the
    image file exists under ``images_root`` (our stores always carry the digest), else
    ``path:<normalised path>``: backslashes turned into ``/``, ``./`` and repeated slashes removed,
    **case kept** (a case-insensitive match is tried only to find the file on disk).
duplicate_groups
    Identities with two or more candidates; every group is listed with all its sources and the chosen one.
surplus_records
    ``candidates - distinct_images``: the records dropped by dedupe (written to ``rejected`` as ``duplicate``).
status_read / status_after_dedupe
    ok / unfit / failed over all records read, and over the one chosen record per distinct image.
    ``failed_kinds_*`` split the failures by ``error_kind``. ``unfit`` lists the unfit images after
    dedupe with their reasons (the refusal text).
images_found / images_missing / images_unchecked
    Over distinct images: the file exists under ``images_root``, does not, or no root was given.
types_* , tokens_* , meter , chars_per_line, lines_per_poem
    Per-体裁 counts of ok records (read, after dedupe, eligible); token statistics over records with a
    positive token count (zero or missing counts are counted apart); 格律 pass rates of the chosen ok records
    per type (a check that answers ``None``, i.e. not applicable, is left out of its rate's denominator);
    characters per line (句) and lines per poem as the meter reads the poem (``meter.lines``: split at ，。！？；、
    and newlines, punctuation removed).
eligible / rejected_by_policy
    The chosen records the policy keeps (written to ``out``) or drops (written to ``rejected``).
written_clean + written_rejected == records_read always holds: rejected = superseded + duplicates + dropped.
These identities and a few more are checked on every run and written under ``invariants``.

The seed's own numbers read straight off a report: "2369 images annotated" is ``distinct_images``, "2345 succeeded"
is ``ok`` (after dedupe) and "24 unfit" is ``unfit`` (after dedupe); ``records_read`` is larger when shards overlap
(the difference is ``surplus_records``), and a failed record is chosen for an image only when nothing better exists.
Records are named ``<file>#<index>`` (JSON list, 0-based) or ``<file>:<line>`` (JSONL, 1-based) everywhere.

Legacy conversion
-----------------
status ok or unfit from ``create_condition`` (a bool or "true"/"false"; when missing, a poem when a 体裁 is given);
体裁 variants (七绝, 七言絕句, 詞, 宋词, a 词牌 repeated as type, …) are read by `poemlib.meter.infer_poem_type`, the content
keeps its characters; ``poem_analysis`` and other aliases fill ``poem_explanation``; ``generated_content`` may
be a JSON string, fenced or embedded in text. A legacy record that names an image but carries no JSON answer
(``generated_content`` absent, null, empty, or text without a JSON object, or an ``error`` field) is a *failed*
record (``empty`` / ``invalid_json`` / ``api_error``). model ``gemini-2.5-pro (legacy)``, prompt_version
``legacy``, usage.total_tokens from ``total_token_count``, source ``<file>#<index>``, created_at = the file's
mtime. Every tolerated variation is counted under ``repairs``. For an image whose file is not found the
record's ``image_sha256`` is a stand-in, sha256 of the text ``path:<normalised path>``, and it is flagged
``path_identity``.

Dedupe policies
---------------
``latest``: the record read last (inputs in the order given, then position within the file; timestamps are
not used because legacy times are file mtimes). ``first``: the record read first. ``best``: the ok record passing
the most of the three meter checks (form, tone, rhyme), an ok record before an unfit one, ties to the later
record. In every policy a failed record is chosen only when all records of its image failed.

Output: ``out`` gets the eligible records, ``rejected`` (default ``rejected.jsonl`` beside it) every other record
with ``reject:<reason>`` flags (superseded, duplicate, failed, unfit, image_missing, form_failed, tone_failed,
rhyme_failed). Records carry ``meter`` (the meter report, ok records only) and ``flags``: ``form_failed`` /
``tone_failed`` / ``rhyme_failed`` per policy, ``image_missing``, ``path_identity``, ``deduplicated``,
``traditional_chars``, ``meter_error``. Both files and the report are written atomically.

Memory and time: JSONL is streamed; legacy JSON files are loaded one at a time; only the chosen record per image
is held (as compact UTF-8 JSON), losers are written out as they lose (under ``best``, every version of a duplicated
image is held until its meter results are in). Meter checks run on chosen ok records only (plus duplicate-group
members under ``best``) and, for large inputs, are shared with worker processes while the inputs are still being
read (``workers``; see `meter_pool.MeterQueue`). Both output files list records in the order each image was first read.
"""

from poemlib.clean.legacy import LEGACY_MODEL, LEGACY_PROMPT_VERSION, legacy_annotation
from poemlib.clean.meter_pool import PARALLEL_MIN_BYTES, default_workers
from poemlib.clean.paths import expand_inputs, normalise_path
from poemlib.clean.plots import plot_report
from poemlib.clean.policy import (
    DEDUPE_POLICIES,
    METER_CHECKS,
    CleanPolicy,
    DedupePolicy,
    load_policy,
)
from poemlib.clean.report import (
    DEFINITIONS,
    CleanReport,
    Counts,
    DuplicateGroup,
    DuplicateMember,
    InputSummary,
    MalformedRecord,
    MeterRates,
    MissingImage,
    TokenStats,
    UnfitItem,
    load_report,
)
from poemlib.clean.run import clean
from poemlib.clean.traditional import has_traditional

__all__ = [
    "DEDUPE_POLICIES",
    "DEFINITIONS",
    "LEGACY_MODEL",
    "LEGACY_PROMPT_VERSION",
    "METER_CHECKS",
    "PARALLEL_MIN_BYTES",
    "CleanPolicy",
    "CleanReport",
    "Counts",
    "DedupePolicy",
    "DuplicateGroup",
    "DuplicateMember",
    "InputSummary",
    "MalformedRecord",
    "MeterRates",
    "MissingImage",
    "TokenStats",
    "UnfitItem",
    "clean",
    "default_workers",
    "expand_inputs",
    "has_traditional",
    "legacy_annotation",
    "load_policy",
    "load_report",
    "normalise_path",
    "plot_report",
]
