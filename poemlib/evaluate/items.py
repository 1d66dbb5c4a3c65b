"""What an evaluation asks about: photos with the request they are asked with and their reference annotation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from poemlib.config import WORK_DIR, resolve_path
from poemlib.images import file_sha256, iter_image_files
from poemlib.io import read_jsonl
from poemlib.schema import Annotation, PoemRequest

DEFAULT_DATA = WORK_DIR / "dataset"


@dataclass
class EvalItem:
    """One photo to answer, with the request it is asked with and its reference annotation (if any)."""

    image: Path
    name: str
    sha256: str
    request: PoemRequest = field(default_factory=PoemRequest)
    reference: Annotation | None = None


def _dataset_items(data: Path, request: PoemRequest | None) -> list[EvalItem]:
    """The test split of a poemlib.transform dataset (test_refs.jsonl), each row with its reference and request."""
    items = []
    for ref in read_jsonl(data / "test_refs.jsonl"):
        asked = request or PoemRequest.model_validate(ref.get("request") or {})
        name = Path((ref.get("source_paths") or [ref["image"]])[0]).name
        reference = Annotation.model_validate(ref["annotation"]) if ref.get("annotation") else None
        items.append(EvalItem(image=data / ref["image"], name=name, sha256=ref["image_sha256"], request=asked, reference=reference))
    return items


def _folder_items(data: Path, request: PoemRequest | None) -> list[EvalItem]:
    """Every photo of a folder; references from an annotations.jsonl beside them (sample format) when present."""
    refs: dict[str, Annotation] = {}
    if (data / "annotations.jsonl").exists():
        from poemlib.samples import reference_by_name

        refs = reference_by_name(data)
    return [
        EvalItem(image=path, name=path.relative_to(data).as_posix(), sha256=file_sha256(path),
                 request=request or PoemRequest(), reference=refs.get(path.name))
        for path in iter_image_files(data)
    ]


def load_items(
    data: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    request: PoemRequest | None = None,
) -> list[EvalItem]:
    """Photos to evaluate.

    - a dataset directory from poemlib.transform (has test_refs.jsonl): the test split, each row with its reference
      annotation and the request it was asked with in the dataset;
    - any folder of photos: every image in it; references from an `annotations.jsonl` beside them in the sample
      format ({"image": name, "annotation": {...}}) when present.
    A `request` given here replaces every row's request (e.g. to ask for one 体裁 throughout).
    """
    data = resolve_path(data, prefer_cwd=True) if data is not None else DEFAULT_DATA
    if (data / "test_refs.jsonl").exists():
        items = _dataset_items(data, request)
    elif data.is_dir():
        items = _folder_items(data, request)
    else:
        raise FileNotFoundError(
            f"{data}: neither a dataset directory (test_refs.jsonl) nor a folder of photos"
            " (build the dataset with notebook 03 / `poemlib transform`, or pass a folder of photos)"
        )
    if not items:
        raise FileNotFoundError(f"{data}: no photos to evaluate")
    return items[:limit] if limit else items
