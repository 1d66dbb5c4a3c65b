"""The one way stages meter-check an annotation: an `Annotation`, a bare annotation mapping or an annotation record.

    check_annotation(annotation, *, mode="pingshui") -> MeterReport | None
        # None when there is no poem to check (None, unfit, status not ok, no type or content);
        # raises MeterCheckError (str: 'TypeName: message') when the checker cannot read the poem
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poemlib.meter.readings import MODES

if TYPE_CHECKING:
    from poemlib.meter.report import MeterReport
    from poemlib.schema import Annotation


class MeterCheckError(Exception):
    """The checker failed on a poem; str() is 'TypeName: message' of the cause, which stages store as meter_error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def annotation_fields(record: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    """The poem annotation inside a record (AnnotationRecord or bare Annotation) and why it was skipped if not."""
    if "annotation" in record or "status" in record:
        status = record.get("status", "ok")
        if status != "ok":
            return None, str(status)
        record = record.get("annotation") or {}
    if not isinstance(record, Mapping) or not record.get("create_condition", True):
        return None, "unfit"
    if not isinstance(record.get("poem_type"), str) or not isinstance(record.get("poem_content"), str):
        return None, "invalid"
    return record, "ok"


def _poem_of(annotation: Annotation | Mapping[str, Any] | None) -> tuple[str, str, str | None] | None:
    """(type, content, title) of the poem to check, or None when there is none."""
    if annotation is None:
        return None
    if isinstance(annotation, Mapping):
        fields, _ = annotation_fields(annotation)
        if fields is None:
            return None
        title = fields.get("poem_title")
        return fields["poem_type"], fields["poem_content"], title if isinstance(title, str) else None
    if not annotation.create_condition or not annotation.poem_type:
        return None
    return annotation.poem_type, annotation.poem_content, annotation.poem_title


def check_annotation(annotation: Annotation | Mapping[str, Any] | None, *, mode: str = "pingshui") -> MeterReport | None:
    """The meter report of an annotation's poem; None when there is none; MeterCheckError when the check fails."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    poem = _poem_of(annotation)
    if poem is None:
        return None
    # The package imports this module, so its entry point is looked up late.
    from poemlib.meter import check

    poem_type, content, title = poem
    try:
        return check(poem_type, content, title, mode)
    except Exception as exc:  # any failure (bad type name or a checker bug) is reported per poem, never a crash
        raise MeterCheckError(exc) from exc
