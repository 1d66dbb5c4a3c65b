"""The one definition of an annotation, its provenance, and the request/result types shared by every stage."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from poemlib.forms import POEM_TYPES, PoemType

ErrorKind = Literal[
    "bad_image",  # file missing, unreadable, not an image, unsupported format
    "safety",  # finishReason SAFETY / PROHIBITED_CONTENT
    "blocked",  # prompt blocked: no candidates returned
    "truncated",  # finishReason MAX_TOKENS
    "recitation",  # finishReason RECITATION
    "invalid_json",  # no JSON object could be extracted from the answer
    "schema_invalid",  # JSON found but it does not fit Annotation
    "empty",  # the model answered with no text
    "rate_limited",  # 429 after all retries
    "server_error",  # 5xx after all retries
    "timeout",  # network timeout after all retries
    "auth",  # 400/401/403: key or request rejected
    "api_error",  # any other API failure
    "generation_error",  # local model failure
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Status(str, Enum):
    """Final state of one image's annotation."""

    ok = "ok"
    unfit = "unfit"
    failed = "failed"


class Annotation(BaseModel):
    """What the annotator (Gemini or a tuned Qwen) answers for one photo."""

    model_config = ConfigDict(extra="forbid")

    create_condition: bool = Field(description="true when the photo can inspire a classical poem; false when it is unfit (chart, text page, blank…)")
    poem_type: PoemType | None = Field(default=None, description="体裁; null when create_condition is false")
    poem_title: str | None = Field(default=None, description="诗题, for 词 '词牌·题目'; null when create_condition is false")
    poem_content: str = Field(description="the poem, one line (句) per '\\n'; 词 stanzas separated by a blank line. When unfit: why the photo is unfit")
    poem_explanation: str = Field(description="赏析: imagery, feeling and technique, tied to what the photo shows")

    @field_validator("poem_content", "poem_explanation")
    @classmethod
    def _normalise_text(cls, value: str) -> str:
        """Unify line endings and strip surrounding whitespace."""
        value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("poem_title")
    @classmethod
    def _strip_title(cls, value: str | None) -> str | None:
        """Strip the title; an empty title counts as missing."""
        if value is None:
            return None
        value = value.strip()
        return value or None

    @model_validator(mode="after")
    def _fit_or_unfit(self) -> "Annotation":
        """A poem needs a type and title; an unfit answer carries neither."""
        if self.create_condition:
            if self.poem_type is None:
                raise ValueError("poem_type is required when create_condition is true")
            if self.poem_title is None:
                raise ValueError("poem_title is required when create_condition is true")
        else:
            if self.poem_type is not None or self.poem_title is not None:
                raise ValueError("an unfit answer (create_condition=false) must have null poem_type and poem_title")
        return self

    def lines(self) -> list[str]:
        """Non-empty lines of the poem (stanza breaks dropped)."""
        return [line.strip() for line in self.poem_content.split("\n") if line.strip()]

    def target_text(self) -> str:
        """The assistant turn used for training and parsed back at inference."""
        return annotation_to_target(self)


class TokenUsage(BaseModel):
    """Token counts reported by the API (or counted locally)."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        """Sum two usages field by field."""
        return TokenUsage(**{k: getattr(self, k) + getattr(other, k) for k in TokenUsage.model_fields})

    def __sub__(self, other: "TokenUsage") -> "TokenUsage":
        """Difference field by field (never below 0)."""
        return TokenUsage(**{k: max(0, getattr(self, k) - getattr(other, k)) for k in TokenUsage.model_fields})


class MeterSummary(BaseModel):
    """The 格律 verdicts of one answer, kept in the store: form / 平仄 / rhyme and the violations' short forms."""

    form_ok: bool | None = None
    tone_ok: bool | None = None
    rhyme_ok: bool | None = None
    violations: list[str] = Field(default_factory=list, description="Violation.short(), e.g. 'L3P2 失粘 君'")
    error: str | None = Field(default=None, description="why the poem could not be checked")

    @property
    def passes(self) -> bool:
        """合律: the poem was checked and no check failed (form, 平仄 and rhyme)."""
        return self.error is None and self.form_ok is not False and self.tone_ok is not False and self.rhyme_ok is not False


class Revision(BaseModel):
    """One answer of an image's conversation: round 0 is the first answer, round k the k-th revision."""

    model_config = ConfigDict(extra="forbid")

    round: int = Field(ge=0)
    status: Status
    text: str | None = Field(default=None, description="the answer text, sent back as the model turn of later rounds")
    annotation: Annotation | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    meter: MeterSummary | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_s: float | None = None
    attempts: int = 1
    prompt_version: str | None = Field(default=None, description="the revision prompt's version (None for round 0)")


class AnnotationRecord(BaseModel):
    """One final line of an annotation store: the answer plus where it came from."""

    model_config = ConfigDict(extra="forbid")

    image_sha256: str
    image_paths: list[str] = Field(min_length=1, description="POSIX paths relative to the images root; the same bytes under several names")
    status: Status
    annotation: Annotation | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    raw_text: str | None = Field(default=None, description="the model's raw answer when it could not be used")
    model: str
    prompt_version: str
    usage: TokenUsage = Field(default_factory=TokenUsage)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    latency_s: float | None = None
    attempts: int = 1
    source: str | None = Field(default=None, description="store or legacy shard this record was read from")
    meter: dict[str, Any] | None = Field(default=None, description="格律 report attached by clean")
    flags: list[str] = Field(default_factory=list, description="policy flags attached by clean, e.g. tone_failed")
    first_answer: Revision | None = Field(default=None, description="round 0 when the first answer failed 格律 and was revised")
    revisions: list[Revision] = Field(default_factory=list, description="revision rounds 1..k; `annotation` is the best round, `usage` sums all")
    revise_rounds: int = Field(default=0, ge=0, description="revision rounds allowed when this record was written")
    revise_prompt_version: str | None = Field(default=None, description="version of the revision prompt that produced the revisions")

    def store_dict(self) -> dict[str, Any]:
        """The record as a store line; a record without revision leaves the revision fields out (the format before them)."""
        data = self.model_dump(mode="json")
        if self.first_answer is None and not self.revisions:
            for name in REVISION_FIELDS:
                data.pop(name, None)
        return data

    @field_validator("image_sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        """Require a lowercase sha256 hex digest."""
        if not _SHA256.match(value):
            raise ValueError(f"image_sha256 must be 64 lowercase hex characters, got {value!r}")
        return value

    @field_validator("image_paths")
    @classmethod
    def _posix_relative(cls, paths: list[str]) -> list[str]:
        """Paths are stored relative and with forward slashes."""
        out = []
        for path in paths:
            path = path.replace("\\", "/")
            if path.startswith("/"):
                raise ValueError(f"image path must be relative to the images root, got {path!r}")
            out.append(path)
        return out

    @model_validator(mode="after")
    def _status_matches(self) -> "AnnotationRecord":
        """The status must agree with the annotation and error fields."""
        if self.status is Status.ok:
            if self.annotation is None or not self.annotation.create_condition:
                raise ValueError("status 'ok' needs an annotation with create_condition=true")
        elif self.status is Status.unfit:
            if self.annotation is None or self.annotation.create_condition:
                raise ValueError("status 'unfit' needs an annotation with create_condition=false")
        else:
            if self.error_kind is None:
                raise ValueError("status 'failed' needs an error_kind")
            if self.annotation is not None:
                raise ValueError("status 'failed' must not carry an annotation")
        return self


REVISION_FIELDS = ("first_answer", "revisions", "revise_rounds", "revise_prompt_version")


class PoemRequest(BaseModel):
    """A user's customisation of one generation, shared by training prompts, evaluation and the demo."""

    poem_type: PoemType | None = None
    cipai: str | None = Field(default=None, description="词牌 when poem_type is 词")
    mood: str | None = Field(default=None, description="mood or theme, e.g. 思乡, 闲适")
    extra_instruction: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 means greedy decoding")
    max_new_tokens: int = Field(default=512, ge=1, le=8192)
    seed: int | None = None
    constrain: bool = Field(default=False, description="格律-constrained decoding (Qwen backends; others ignore it)")

    @model_validator(mode="after")
    def _cipai_needs_ci(self) -> "PoemRequest":
        """A 词牌 only makes sense for 词."""
        if self.cipai and self.poem_type not in (None, "词"):
            raise ValueError(f"a 词牌 ({self.cipai}) was given but poem_type is {self.poem_type}")
        return self


class GenerationResult(BaseModel):
    """What any backend returns for one image."""

    backend: str
    annotation: Annotation | None = None
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    raw_text: str = ""
    latency_s: float = 0.0
    usage: TokenUsage = Field(default_factory=TokenUsage)
    constrained: bool = Field(default=False, description="generated under the 格律 constraint (poemlib.constrain)")

    @property
    def ok(self) -> bool:
        """True when a schema-valid annotation was produced."""
        return self.annotation is not None


# ---------------------------------------------------------------------------
# JSON schema sent to Gemini, and the target text a tuned model emits
# ---------------------------------------------------------------------------

TARGET_FIELDS = ("poem_type", "poem_title", "poem_content", "poem_explanation")


def annotation_json_schema() -> dict[str, Any]:
    """Standard JSON schema of Annotation (pydantic's rendering)."""
    return Annotation.model_json_schema()


def gemini_response_schema() -> dict[str, Any]:
    """Annotation as the OpenAPI-subset schema Gemini's `response_schema` accepts (nullable, enum, no $ref)."""
    props: dict[str, Any] = {}
    for name, field in Annotation.model_fields.items():
        if name == "create_condition":
            spec: dict[str, Any] = {"type": "BOOLEAN"}
        elif name == "poem_type":
            spec = {"type": "STRING", "enum": list(POEM_TYPES), "nullable": True}
        elif name == "poem_title":
            spec = {"type": "STRING", "nullable": True}
        else:
            spec = {"type": "STRING"}
        spec["description"] = field.description or name
        props[name] = spec
    return {
        "type": "OBJECT",
        "properties": props,
        "required": list(Annotation.model_fields),
        "propertyOrdering": list(Annotation.model_fields),
    }


def annotation_to_target(annotation: Annotation) -> str:
    """Serialise an annotation as the assistant's answer: schema fields, create_condition only when unfit."""
    if annotation.create_condition:
        payload = {k: getattr(annotation, k) for k in TARGET_FIELDS}
    else:
        payload = {"create_condition": False, "poem_content": annotation.poem_content, "poem_explanation": annotation.poem_explanation}
    return json.dumps(payload, ensure_ascii=False)


class JSONExtractionError(ValueError):
    """No JSON object could be found in a model's text."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_json_object(text: str) -> dict[str, Any]:
    """Find the first JSON object in free text: fenced block first, else the first balanced {...}."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj
            start = chunk.find("{", start + 1)
    raise JSONExtractionError(f"no JSON object in model output: {text[:120]!r}")


def parse_annotation_text(text: str) -> Annotation:
    """Parse a model's answer (JSON, fenced or embedded) into an Annotation; missing create_condition means a poem."""
    obj = extract_json_object(text)
    if "create_condition" not in obj:
        obj = {"create_condition": True, **obj}
    return Annotation.model_validate(obj)
