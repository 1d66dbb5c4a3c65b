"""Clean records → distinct, verified images, each with its training rows."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poemlib.config import describe_validation_error
from poemlib.images import MAX_SOURCE_PIXELS, BadImageError, file_sha256, open_image, prepare_image
from poemlib.instructions import IMAGE_PLACEHOLDER, render_instruction, request_for_annotation
from poemlib.io import iter_jsonl
from poemlib.schema import AnnotationRecord, Status, annotation_to_target
from poemlib.transform.split import UNFIT_STRATUM

# Formats stored byte-identical (after an EXIF/mode check); anything else is re-encoded as PNG.
LINKABLE_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
Issues = list[tuple[str, str]]


@dataclass
class SourceImage:
    """One distinct image (by sha256) and the record that annotates it."""

    sha: str
    record: AnnotationRecord
    source: Path
    labels: list[str]
    stratum: str
    normalise: bool = False
    suffix: str = ".jpg"
    pil: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def load_records(
    clean_path: Path, include_unfit: bool, exclude_flags: set[str], issues: Issues
) -> tuple[list[tuple[str, AnnotationRecord]], Counter, int]:
    """Eligible records with a label naming them; skip counts by reason; number of input records."""
    records: list[tuple[str, AnnotationRecord]] = []
    skipped: Counter = Counter()
    n = 0
    for line_no, obj in iter_jsonl(clean_path):
        n += 1
        label = f"{clean_path.name}:{line_no}"
        try:
            record = AnnotationRecord.model_validate(obj)
        except ValidationError as exc:  # a malformed record is a validation problem, reported with the others
            issues.append((label, f"not a valid AnnotationRecord ({describe_validation_error(exc)})"))
            continue
        label = f"{label} ({record.image_paths[0]}, sha {record.image_sha256[:12]})"
        if record.status is Status.failed:
            skipped["failed"] += 1
        elif record.status is Status.unfit and not include_unfit:
            skipped["unfit (include_unfit=false)"] += 1
        elif exclude_flags & set(record.flags):
            skipped["excluded flag"] += 1
        else:
            records.append((label, record))
    return records, skipped, n


def collect_images(
    records: list[tuple[str, AnnotationRecord]], images_root: Path, skipped: Counter, issues: Issues
) -> dict[str, SourceImage]:
    """Distinct images by sha256, each checked to open and to have the bytes it was annotated for."""
    images: dict[str, SourceImage] = {}
    for label, record in records:
        target = annotation_to_target(record.annotation) if record.annotation else ""
        if not target.strip() or record.annotation is None or not record.annotation.poem_content.strip():
            issues.append((label, "empty target"))
            continue
        if record.image_sha256 in images:  # same bytes again (another record or name): one image, one split
            images[record.image_sha256].labels.append(label)
            skipped["duplicate image (same sha256)"] += 1
            continue
        image = _verified_image(label, record, images_root, issues)
        if image is not None:
            images[record.image_sha256] = image
    return images


def _verified_image(label: str, record: AnnotationRecord, images_root: Path, issues: Issues) -> SourceImage | None:
    """The record's image if it exists, opens and has the annotated bytes (else an issue is recorded)."""
    source = next((images_root / p for p in record.image_paths if (images_root / p).is_file()), None)
    if source is None:
        issues.append((label, f"image not found under {images_root}: {record.image_paths}"))
        return None
    try:
        pil = open_image(source)
    except BadImageError as exc:
        issues.append((label, f"image does not open: {exc}"))
        return None
    actual = file_sha256(source)
    if actual != record.image_sha256:
        issues.append((label, f"{source.name} has sha256 {actual[:12]}…, the record was annotated for {record.image_sha256[:12]}…"))
        return None
    orientation = pil.getexif().get(0x0112, 1)
    normalise = pil.format not in LINKABLE_FORMATS or orientation not in (None, 1) or pil.mode not in ("RGB", "L")
    if normalise:
        pil = prepare_image(source, MAX_SOURCE_PIXELS)
    return SourceImage(
        sha=record.image_sha256,
        record=record,
        source=source,
        labels=[label],
        stratum=record.annotation.poem_type if record.annotation.create_condition else UNFIT_STRATUM,
        normalise=normalise,
        suffix=".png" if normalise else LINKABLE_FORMATS[pil.format],
        pil=pil,
    )


def add_rows(image: SourceImage, n_rows: int, seed: int) -> None:
    """Rows of one image: a distinct instruction drawn from the pool per variant, the annotation JSON as the answer."""
    rng = random.Random(f"rows:{seed}:{image.sha}")
    annotation = image.record.annotation
    seen: set[str] = set()
    for variant in range(n_rows):
        for _attempt in range(8):
            request = request_for_annotation(annotation, rng)
            instruction = render_instruction(request, rng=rng)
            if instruction not in seen:
                break
        seen.add(instruction)
        image.rows.append(
            {
                "variant": variant,
                "request": request,
                "row": {
                    "messages": [
                        {"role": "user", "content": IMAGE_PLACEHOLDER + instruction},
                        {"role": "assistant", "content": annotation_to_target(annotation)},
                    ],
                    "images": [f"images/{image.sha}{image.suffix}"],
                },
            }
        )
