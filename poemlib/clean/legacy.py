"""The seed project's legacy answers: field aliases, tolerated variations, conversion to our Annotation.

A legacy record is ``{"generated_content": {...}, "total_token_count": int, "image_path": "Train\\\\12.jpg"}``;
every variation tolerated on the way is counted under ``repairs`` by its kind.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pydantic import ValidationError

from poemlib.config import describe_validation_error
from poemlib.meter.poem_types import infer_poem_type
from poemlib.schema import POEM_TYPES, Annotation, extract_json_object

LEGACY_MODEL = "gemini-2.5-pro (legacy)"
LEGACY_PROMPT_VERSION = "legacy"

IMAGE_KEYS = ("image_path", "imagePath", "image", "img_path", "image_file", "image_name", "path", "file")
GC_KEYS = ("generated_content", "generatedContent", "generated", "result", "response", "output", "annotation")
TOKEN_KEYS = ("total_token_count", "totalTokenCount", "token_count", "total_tokens", "tokens", "usage", "usage_metadata")
_ERROR_KEYS = ("error", "error_message", "exception")
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "create_condition": ("create_condition", "createCondition", "can_create", "suitable"),
    "poem_type": ("poem_type", "poemType", "type", "体裁"),
    "poem_title": ("poem_title", "poemTitle", "title", "诗题", "标题"),
    "poem_content": ("poem_content", "poemContent", "content", "poem", "诗歌", "正文"),
    "poem_explanation": ("poem_explanation", "poemExplanation", "poem_analysis", "poemAnalysis", "explanation", "analysis", "poem_appreciation", "appreciation", "赏析"),
}
KNOWN_FIELDS = {alias for aliases in FIELD_ALIASES.values() for alias in aliases}
_TRUE = {"true", "t", "yes", "y", "1", "是", "可以"}
_FALSE = {"false", "f", "no", "n", "0", "否", "不可以", "none", "null", ""}
_NO_TYPE = ("", "null", "none", "无")


class Malformed(ValueError):
    """A record that cannot be made schema-valid."""


class NotJSON(Malformed):
    """A JSONL line that is not JSON."""


def malformed_from(exc: ValidationError) -> Malformed:
    """A schema validation failure as a Malformed reason."""
    return Malformed(describe_validation_error(exc, root="record"))


def first_key(obj: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` present in `obj`."""
    for key in keys:
        if key in obj:
            return key
    return None


def is_record_shaped(obj: Any) -> bool:
    """Whether a JSON value looks like one record (ours or legacy) rather than a container of records."""
    return isinstance(obj, dict) and ("image_sha256" in obj or first_key(obj, IMAGE_KEYS) is not None or first_key(obj, GC_KEYS) is not None)


def _as_bool(value: Any) -> bool:
    """create_condition as a bool (JSON bool, 0/1, or a yes/no word)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Malformed(f"create_condition {value!r} is not a boolean")


def token_count(value: Any) -> int | None:
    """A token count from a number, a digit string or a usage object (None when unreadable)."""
    if isinstance(value, dict):
        for key in ("total_token_count", "totalTokenCount", "total_tokens"):
            if key in value:
                return token_count(value[key])
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    """A text field as a string (None when absent or blank); a list of lines is joined."""
    if value is None:
        return None
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value)
    value = str(value)
    return value if value.strip() else None


def _aliased_fields(gc: dict[str, Any], repairs: Counter) -> dict[str, Any]:
    """The answer's fields under our names (first alias found wins); unknown keys counted as ignored."""
    fields: dict[str, Any] = {}
    for name, aliases in FIELD_ALIASES.items():
        key = first_key(gc, aliases)
        if key is None:
            continue
        if key != name:
            repairs[f"field:{key}->{name}"] += 1
        fields[name] = gc[key]
    for key in gc:
        if key not in KNOWN_FIELDS:
            repairs[f"ignored_field:{key}"] += 1
    return fields


def _is_fit(fields: dict[str, Any], raw_type: Any, repairs: Counter) -> bool:
    """create_condition, or (when missing) whether a 体裁 is given."""
    if fields.get("create_condition") is not None:
        value = fields["create_condition"]
        fit = _as_bool(value)
        if not isinstance(value, bool):
            repairs["create_condition:not a JSON bool"] += 1
        return fit
    fit = raw_type is not None
    repairs[f"create_condition:missing->inferred {str(fit).lower()}"] += 1
    return fit


def _unfit_payload(content: str | None, explanation: str | None, raw_type: Any, title: str | None, repairs: Counter) -> dict[str, Any]:
    """An unfit answer: the refusal text in both content and explanation, no type or title."""
    if raw_type is not None or title is not None:
        repairs["unfit:type/title dropped"] += 1
    if content is None and explanation is None:
        raise Malformed("unfit record without a reason (poem_content and poem_explanation both empty)")
    if content is None or explanation is None:
        repairs["unfit:reason copied between content and explanation"] += 1
    content, explanation = content or explanation, explanation or content
    return {"create_condition": False, "poem_type": None, "poem_title": None, "poem_content": content, "poem_explanation": explanation}


def legacy_annotation(gc: dict[str, Any], repairs: Counter) -> Annotation:
    """Turn a legacy generated_content object into an Annotation (raises Malformed)."""
    fields = _aliased_fields(gc, repairs)
    content = _text(fields.get("poem_content"))
    explanation = _text(fields.get("poem_explanation"))
    title = _text(fields.get("poem_title"))
    raw_type = fields.get("poem_type")
    if isinstance(raw_type, str) and raw_type.strip().lower() in _NO_TYPE:
        raw_type = None
    fit = _is_fit(fields, raw_type, repairs)
    if content and "\n" not in content and "\\n" in content:
        content = content.replace("\\n", "\n")
        repairs["content:literal \\n"] += 1
    if not fit:
        payload = _unfit_payload(content, explanation, raw_type, title, repairs)
    else:
        if raw_type is None:
            raise Malformed("poem without poem_type")
        ptype, repair = infer_poem_type(raw_type, title=title, content=content)
        if ptype is None:
            raise Malformed(f"poem_type {raw_type!r} is not one of {', '.join(POEM_TYPES)}")
        if repair:
            repairs[repair] += 1
        payload = {"create_condition": True, "poem_type": ptype, "poem_title": title, "poem_content": content, "poem_explanation": explanation}
    try:
        return Annotation.model_validate(payload)
    except ValidationError as exc:
        raise malformed_from(exc) from None


def _answer_from_text(text: str, raw: str, repairs: Counter) -> tuple[dict[str, Any] | None, tuple[str, str, str | None] | None]:
    """The answer object in a text generated_content: plain JSON, or a JSON object fenced/embedded in text."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        repairs["generated_content:JSON string"] += 1
        return parsed, None
    try:
        parsed = extract_json_object(text)
    except ValueError:
        return None, ("invalid_json", f"generated_content has no JSON object: {text[:120]!r}", raw)
    repairs["generated_content:JSON extracted from text"] += 1
    return parsed, None


def legacy_answer(obj: dict[str, Any], repairs: Counter) -> tuple[dict[str, Any] | None, tuple[str, str, str | None] | None]:
    """(answer object, None) or (None, (error_kind, message, raw_text)) for a legacy record."""
    gc_key = first_key(obj, GC_KEYS)
    if gc_key is None and first_key(obj, FIELD_ALIASES["poem_content"]) is not None:
        repairs["answer fields at top level"] += 1
        return {k: v for k, v in obj.items() if k in KNOWN_FIELDS}, None
    if gc_key is not None and gc_key != "generated_content":
        repairs[f"field:{gc_key}->generated_content"] += 1
    gc = obj.get(gc_key) if gc_key else None
    if isinstance(gc, dict):
        return gc, None
    if isinstance(gc, str) and gc.strip():
        return _answer_from_text(gc.strip(), gc, repairs)
    if gc is not None and not isinstance(gc, str):
        raise Malformed(f"generated_content is a {type(gc).__name__}, not an object or text")
    error_key = first_key(obj, _ERROR_KEYS)
    error = _text(obj.get(error_key)) if error_key else None
    if error:
        return None, ("api_error", error, None)
    return None, ("empty", "generated_content is missing or empty", None)
