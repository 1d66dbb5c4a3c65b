"""Reference data for tests and experiments: sample annotations as clean records, requests of test rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from poemlib.config import SAMPLE_DIR
from poemlib.images import file_sha256
from poemlib.schema import AnnotationRecord, PoemRequest, Status


def request_from_ref(ref: dict[str, Any]) -> PoemRequest:
    """The PoemRequest a test_refs.jsonl row was asked with."""
    return PoemRequest.model_validate(ref.get("request") or {})


def reference_records(sample_dir: str | os.PathLike[str] | None = None, *, model: str = "reference") -> list[AnnotationRecord]:
    """AnnotationRecords built from the sample reference annotations (a clean-like input for tests and experiments)."""
    from poemlib.samples import reference_by_name

    root = Path(sample_dir) if sample_dir is not None else SAMPLE_DIR
    records = []
    for name, annotation in sorted(reference_by_name(root).items()):
        records.append(
            AnnotationRecord(
                image_sha256=file_sha256(root / name),
                image_paths=[name],
                status=Status.ok if annotation.create_condition else Status.unfit,
                annotation=annotation,
                model=model,
                prompt_version="reference",
            )
        )
    return records
