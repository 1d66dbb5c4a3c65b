"""One record as clean holds it (`Item`), built from a store line or a converted legacy record."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from poemlib.clean.legacy import (
    IMAGE_KEYS,
    LEGACY_MODEL,
    LEGACY_PROMPT_VERSION,
    TOKEN_KEYS,
    Malformed,
    NotJSON,
    first_key,
    legacy_annotation,
    legacy_answer,
    malformed_from,
    token_count,
)
from poemlib.clean.paths import ImageResolver, normalise_path, relative_for_schema
from poemlib.schema import AnnotationRecord, TokenUsage

if TYPE_CHECKING:
    from poemlib.clean.meter_result import MeterResult

# Fields clean sets anew on every output line (an earlier clean's values are dropped).
_OUT_FIELDS = {"image_paths", "source", "meter", "flags"}
# UTF-8 JSON straight from pydantic-core (model_dump_json decodes it to str, to be encoded back here).
_RECORD_JSON = TypeAdapter(AnnotationRecord).dump_json


class Item:
    """One validated record, held compactly: its JSON (less the fields clean sets) plus what dedupe and counts need."""

    __slots__ = ("content", "error_kind", "identity", "image_state", "kind", "order", "paths", "payload", "ptype", "rel_path", "source", "status", "title", "tokens")

    def __init__(self, identity: str, order: tuple[int, int], source: str, record: AnnotationRecord, rel_path: str, image_state: str, kind: str) -> None:
        self.identity = identity
        self.order = order
        self.source = source
        self.kind = kind
        self.rel_path = rel_path
        self.image_state = image_state
        self.paths = record.image_paths
        self.payload = _RECORD_JSON(record, exclude=_OUT_FIELDS)
        self.status = record.status.value
        self.error_kind = record.error_kind
        ann = record.annotation
        self.ptype = ann.poem_type if ann else None
        self.title = ann.poem_title if ann else None
        self.content = ann.poem_content if ann else None
        self.tokens = record.usage.total_tokens

    def to_json(self, *, paths: list[str] | None = None, meter: MeterResult | None = None, flags: list[str] | None = None) -> bytes:
        """The output line (UTF-8, no newline): the record with image_paths, source, flags and meter set by clean."""
        tail = orjson.dumps({"image_paths": paths or self.paths, "source": self.source, "flags": flags or []})
        return b"".join((self.payload[:-1], b",", tail[1:-1], b',"meter":', meter.json if meter is not None else b"null", b"}"))


def store_item(obj: dict[str, Any] | bytes, order: tuple[int, int], source: str, images: ImageResolver) -> Item:
    """A line of our store (meter, flags and source from an earlier clean are ignored and set anew)."""
    try:
        record = AnnotationRecord.model_validate_json(obj) if isinstance(obj, bytes) else AnnotationRecord.model_validate(obj)
    except ValidationError as exc:
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            raise NotJSON(str(exc.errors()[0].get("msg", ""))) from None
        raise malformed_from(exc) from None
    exists = images.exists_any(record.image_paths)
    state = "unchecked" if exists is None else ("found" if exists else "missing")
    return Item("sha256:" + record.image_sha256, order, source, record, record.image_paths[0], state, "store")


def _legacy_image(obj: dict[str, Any], images: ImageResolver, repairs: Counter) -> tuple[str, str, str, str]:
    """(identity, sha256, schema path, image state) of a legacy record's image; a stand-in digest when not found."""
    image_key = first_key(obj, IMAGE_KEYS)
    raw_path = obj.get(image_key) if image_key else None
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise Malformed("no image_path")
    if image_key != "image_path":
        repairs[f"field:{image_key}->image_path"] += 1
    norm = normalise_path(raw_path)
    hit = images.find(norm, repairs)
    if hit is not None:
        digest = images.sha(hit[0])
        return "sha256:" + digest, digest, hit[1], "found"
    identity = "path:" + norm
    state = "missing" if images.root is not None else "unchecked"
    return identity, hashlib.sha256(identity.encode("utf-8")).hexdigest(), relative_for_schema(norm), state


def _legacy_tokens(obj: dict[str, Any], repairs: Counter) -> int | None:
    """The record's total token count (None when missing or unreadable)."""
    token_key = first_key(obj, TOKEN_KEYS)
    tokens = token_count(obj.get(token_key)) if token_key else None
    if tokens is None:
        repairs["total_token_count:missing or unreadable"] += 1
    elif token_key != "total_token_count":
        repairs[f"field:{token_key}->total_token_count"] += 1
    return tokens


def legacy_item(obj: dict[str, Any], order: tuple[int, int], source: str, mtime: datetime, images: ImageResolver, repairs: Counter) -> Item:
    """A legacy record converted to our schema (created_at = the file's mtime); raises Malformed."""
    identity, digest, rel, state = _legacy_image(obj, images, repairs)
    tokens = _legacy_tokens(obj, repairs)
    answer, failure = legacy_answer(obj, repairs)
    common: dict[str, Any] = {
        "image_sha256": digest,
        "image_paths": [rel],
        "model": LEGACY_MODEL,
        "prompt_version": LEGACY_PROMPT_VERSION,
        "usage": TokenUsage(total_tokens=tokens or 0),
        "created_at": mtime,
        "source": source,
    }
    try:
        if failure is not None:
            kind, message, raw_text = failure
            record = AnnotationRecord(status="failed", error_kind=kind, error_message=message, raw_text=raw_text, **common)
        else:
            annotation = legacy_annotation(answer or {}, repairs)
            record = AnnotationRecord(status="ok" if annotation.create_condition else "unfit", annotation=annotation, **common)
    except ValidationError as exc:
        raise malformed_from(exc) from None
    return Item(identity, order, source, record, rel, state, "legacy")
