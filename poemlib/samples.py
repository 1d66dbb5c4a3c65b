"""The bundled sample photos (data/sample/), our reference annotations for them and our flawed drafts.

The photos are real pictures taken from PyPI packages (see data/sample/SOURCES.md); the reference
annotations in data/sample/annotations.jsonl are our own poems, one line per image:
``{"image": "<file name>", "annotation": {...Annotation fields...}}``. data/sample/drafts.jsonl holds, for every
fit photo, our own deliberately flawed draft of its reference poem (same 体裁, 词牌 and title, one or two 格律 faults):
``{"image": "<file name>", "flaws": ["第4句出韵「仙」", ...], "draft": {...Annotation fields...}}``; the offline Gemini
server answers it first and the reference once a revision request names every fault.

`replay_mismatch(annotation)` reads the note the offline server puts at the start of ``poem_explanation`` when it
was asked for a 体裁/词牌 it has no recorded poem for (backends, evaluation and the demo mark such answers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from poemlib.config import SAMPLE_DIR
from poemlib.images import IMAGE_SUFFIXES, file_sha256
from poemlib.io import read_jsonl
from poemlib.schema import Annotation

ANNOTATIONS_FILE = "annotations.jsonl"
DRAFTS_FILE = "drafts.jsonl"
# The note that opens poem_explanation when the replay answered another 体裁 than the one asked for.
REPLAY_MISMATCH_NOTE = "【离线回放：所求体裁（{requested}）无录制诗，以下为录制的{recorded}】"
_MISMATCH_RE = re.compile(r"^【离线回放：所求体裁（(?P<requested>[^）]+)）无录制诗，以下为录制的(?P<recorded>[^】]+)】")


class SampleDataError(ValueError):
    """The sample folder and its reference annotations do not match."""


def _sample_dir(sample_dir: str | os.PathLike[str] | None) -> Path:
    return Path(sample_dir) if sample_dir is not None else SAMPLE_DIR


def sample_images(sample_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The sample photos, sorted by name (image files only: no SOURCES.md, no annotations)."""
    root = _sample_dir(sample_dir)
    return sorted(
        p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


@lru_cache(maxsize=16)
def _load(path: Path, key: str, mtime_ns: int) -> dict[str, Annotation]:
    """The annotations under `key` of a sample JSONL file, keyed by image file name (cached per file version)."""
    out: dict[str, Annotation] = {}
    for obj in read_jsonl(path, tolerate_torn_tail=False):
        name = obj.get("image")
        if not isinstance(name, str) or key not in obj:
            raise SampleDataError(f"{path}: each line needs 'image' and {key!r}, got keys {sorted(obj)}")
        if name in out:
            raise SampleDataError(f"{path}: image {name!r} is listed twice")
        try:
            out[name] = Annotation.model_validate(obj[key])
        except ValueError as exc:
            raise SampleDataError(f"{path}: {key} of {name!r} is invalid: {exc}") from exc
    return out


def _load_file(sample_dir: str | os.PathLike[str] | None, file_name: str, key: str) -> dict[str, Annotation]:
    root = _sample_dir(sample_dir).resolve()
    path = root / file_name
    if not path.exists():
        raise SampleDataError(f"{path}: sample {key}s not found")
    return dict(_load(path, key, path.stat().st_mtime_ns))


def reference_by_name(sample_dir: str | os.PathLike[str] | None = None) -> dict[str, Annotation]:
    """Reference annotations keyed by image file name (e.g. 'cat_chelsea.jpg')."""
    return _load_file(sample_dir, ANNOTATIONS_FILE, "annotation")


def draft_by_name(sample_dir: str | os.PathLike[str] | None = None) -> dict[str, Annotation]:
    """Our flawed drafts keyed by image file name; each keeps its reference's 体裁 and title (checked here)."""
    drafts = _load_file(sample_dir, DRAFTS_FILE, "draft")
    references = reference_by_name(sample_dir)
    path = _sample_dir(sample_dir) / DRAFTS_FILE
    for name, draft in drafts.items():
        reference = references.get(name)
        if reference is None or not reference.create_condition:
            raise SampleDataError(f"{path}: draft of {name!r} has no fit reference poem in {ANNOTATIONS_FILE}")
        if (draft.poem_type, draft.poem_title) != (reference.poem_type, reference.poem_title):
            raise SampleDataError(
                f"{path}: draft of {name!r} is a {draft.poem_type} titled {draft.poem_title!r}, but its reference is a "
                f"{reference.poem_type} titled {reference.poem_title!r} (a draft keeps the form and title)"
            )
    return drafts


def _by_sha256(sample_dir: str | os.PathLike[str] | None, by_name: dict[str, Annotation], file_name: str) -> dict[str, Annotation]:
    """The same annotations keyed by the sha256 of each image file's bytes."""
    root = _sample_dir(sample_dir)
    out: dict[str, Annotation] = {}
    for name, annotation in by_name.items():
        image = root / name
        if not image.is_file():
            raise SampleDataError(f"{root / file_name}: annotated image {name!r} is missing from {root}")
        out[file_sha256(image)] = annotation
    return out


def reference_annotations(sample_dir: str | os.PathLike[str] | None = None) -> dict[str, Annotation]:
    """Reference annotations keyed by the sha256 of each image file's bytes."""
    return _by_sha256(sample_dir, reference_by_name(sample_dir), ANNOTATIONS_FILE)


def draft_annotations(sample_dir: str | os.PathLike[str] | None = None) -> dict[str, Annotation]:
    """Flawed drafts keyed by the sha256 of each image file's bytes."""
    return _by_sha256(sample_dir, draft_by_name(sample_dir), DRAFTS_FILE)


def replay_mismatch_note(requested: str, recorded: str) -> str:
    """The note opening poem_explanation when the replay answers `recorded` (e.g. 七言律诗) to a request for `requested`."""
    return REPLAY_MISMATCH_NOTE.format(requested=requested, recorded=recorded)


def replay_mismatch(annotation: Annotation | Mapping[str, Any] | None) -> str | None:
    """The offline replay's mismatch note at the start of poem_explanation (the whole 【…】 text), else None."""
    if annotation is None:
        return None
    explanation = annotation.get("poem_explanation") if isinstance(annotation, Mapping) else annotation.poem_explanation
    found = _MISMATCH_RE.match(explanation) if isinstance(explanation, str) else None
    return found.group(0) if found else None
