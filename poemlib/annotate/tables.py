"""The store as tables for notebooks: one row per image, and poems as cards (through `poemlib.render`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from poemlib import render
from poemlib.annotate.store import load_store
from poemlib.schema import AnnotationRecord

if TYPE_CHECKING:
    import pandas as pd


def _records(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord]) -> list[AnnotationRecord]:
    if isinstance(store, (str, os.PathLike)):
        return list(load_store(store).values())
    if isinstance(store, Mapping):
        return list(store.values())
    return list(store)


def _row(r: AnnotationRecord) -> dict[str, Any]:
    a = r.annotation
    return {
        "image": r.image_paths[0],
        "also": ", ".join(r.image_paths[1:]),
        "status": r.status.value,
        "error_kind": r.error_kind,
        "poem_type": a.poem_type if a else None,
        "poem_title": a.poem_title if a else None,
        "reason_or_first_line": (a.lines()[0] if a and a.create_condition else (a.poem_content if a else r.error_message)),
        "prompt_tokens": r.usage.prompt_tokens,
        "output_tokens": r.usage.output_tokens,
        "thinking_tokens": r.usage.thinking_tokens,
        "attempts": r.attempts,
        "sha256": r.image_sha256[:12],
    }


def store_frame(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord]) -> pd.DataFrame:
    """One row per image (current record): paths, status, kind, type, title, tokens."""
    import pandas as pd

    return pd.DataFrame([_row(r) for r in _records(store)])


def poems_html(records: Iterable[AnnotationRecord], limit: int = 4) -> str:
    """The first `limit` poems as cards (title, type, lines, 赏析, the photo's path), with the stylesheet inlined."""
    cards = []
    for record in records:
        a = record.annotation
        if a is None or not a.create_condition:
            continue
        cards.append(render.poem_card_html(a, meta=record.image_paths[0], key="annotate"))
        if len(cards) >= limit:
            break
    return render.styled('<div class="poem-cards">' + "".join(cards) + "</div>")
