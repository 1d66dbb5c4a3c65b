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


def _poem_records(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord]) -> list[AnnotationRecord]:
    return [r for r in _records(store) if r.status.value == "ok" and r.annotation is not None]


def revision_frame(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord]) -> pd.DataFrame:
    """One row per poem: 体裁, revision rounds used, whether the first answer and the final poem are 合律, and the
    violations of each (the first answer's from round 0, else the record's own poem)."""
    import pandas as pd

    from poemlib.annotate.revision import meter_summary

    rows = []
    for r in _poem_records(store):
        final = meter_summary(r.annotation)
        first = r.first_answer.meter if r.first_answer is not None and r.first_answer.meter is not None else final
        rows.append(
            {
                "image": r.image_paths[0],
                "poem_type": r.annotation.poem_type if r.annotation else None,
                "rounds": len(r.revisions),
                "first_ok": first.passes,
                "final_ok": final.passes,
                "first_violations": ", ".join(first.violations),
                "final_violations": ", ".join(final.violations),
                "revision_tokens": sum(x.usage.total_tokens for x in r.revisions),
            }
        )
    columns = ["image", "poem_type", "rounds", "first_ok", "final_ok", "first_violations", "final_violations", "revision_tokens"]
    return pd.DataFrame(rows, columns=columns)


def revision_summary(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord], prices: Any = None) -> pd.DataFrame:
    """First-answer vs final 合律率, rounds used and what revision cost, as a (metric, value) table."""
    import pandas as pd

    from poemlib.annotate.cost import cost_frame

    records = _records(store)
    frame = revision_frame(records)
    costs = cost_frame(records, prices).set_index("item").loc["total"]
    n = len(frame)
    rows = [
        ("poems", n),
        ("first-answer 合律率", round(float(frame["first_ok"].mean()), 4) if n else 0.0),
        ("final 合律率", round(float(frame["final_ok"].mean()), 4) if n else 0.0),
        ("poems revised", int((frame["rounds"] > 0).sum()) if n else 0),
        ("max rounds used", int(frame["rounds"].max()) if n else 0),
        *((f"poems with {k} round(s)", int(v)) for k, v in sorted(frame["rounds"].value_counts().items())),
        ("revision tokens", int(costs["revision_tokens"])),
        ("revision cost (USD)", float(costs["revision_usd"])),
        ("first-answer cost (USD)", float(costs["first_usd"])),
    ]
    return pd.DataFrame(rows, columns=["metric", "value"], dtype=object)


def revised_records(store: str | os.PathLike[str] | Mapping[str, AnnotationRecord] | Iterable[AnnotationRecord]) -> list[AnnotationRecord]:
    """The records whose poem went through at least one revision round."""
    return [r for r in _records(store) if r.revisions]


def revision_html(records: Iterable[AnnotationRecord], limit: int = 1) -> str:
    """For the first `limit` revised records: the first answer's card beside the kept poem's card."""
    cards = []
    for record in [r for r in records if r.revisions and r.first_answer is not None and r.first_answer.annotation][:limit]:
        first = record.first_answer.annotation  # type: ignore[union-attr]
        cards.append(render.poem_card_html(first, meta=f"{record.image_paths[0]} · first answer", key="revision-first"))
        if record.annotation is not None:
            cards.append(render.poem_card_html(record.annotation, meta=f"{record.image_paths[0]} · kept after {len(record.revisions)} round(s)", key="revision-final"))
    return render.styled('<div class="poem-cards">' + "".join(cards) + "</div>")
