"""What transform wrote: validation errors, split and length statistics, the split report and its plot."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from poemlib.transform.split import SPLITS


class TransformValidationError(ValueError):
    """The data failed validation; `issues` lists (record label, problem) and nothing was written."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        self.issues = issues
        shown = "\n".join(f"  - {label}: {problem}" for label, problem in issues[:50])
        more = f"\n  … and {len(issues) - 50} more" if len(issues) > 50 else ""
        super().__init__(f"{len(issues)} validation problem(s), nothing written:\n{shown}{more}")


class SplitStats(BaseModel):
    """Size of one split."""

    images: int = 0
    rows: int = 0
    by_type: dict[str, int] = Field(default_factory=dict, description="images per poem_type (unfit counted as 'unfit')")
    poems: int = Field(0, description="images whose target is a poem (status ok)")
    meter_ok: int = Field(0, description="of those, poems that are 合律: form, 平仄 and rhyme all pass (poemlib.meter)")


class LengthStats(BaseModel):
    """Token length distribution of all rows (text + visual tokens, as LLaMA-Factory encodes them)."""

    n: int = 0
    min: int = 0
    p50: float = 0.0
    p90: float = 0.0
    max: int = 0
    mean: float = 0.0
    visual_min: int = 0
    visual_max: int = 0
    cutoff_len: int = 0


class TransformReport(BaseModel):
    """What transform wrote and why."""

    out_dir: Path
    files: dict[str, Path]
    n_input_records: int
    n_images: int
    skipped: dict[str, int] = Field(default_factory=dict, description="records not used, by reason")
    splits: dict[str, SplitStats]
    lengths: LengthStats
    seed: int
    val: float
    test: float
    variants_per_image: int
    include_unfit: bool
    image_max_pixels: int
    image_min_pixels: int
    processor: str
    normalised_images: int = Field(0, description="images re-encoded as PNG (EXIF rotation / colour mode / format)")

    @property
    def meter_ok_share(self) -> float:
        """The 合律 share of the poems written (all splits); 0 when there are none."""
        poems = sum(s.poems for s in self.splits.values())
        return sum(s.meter_ok for s in self.splits.values()) / poems if poems else 0.0

    def table(self) -> list[dict[str, Any]]:
        """Rows of a sizes table: one per split with images, rows and images per type."""
        types = sorted({t for s in self.splits.values() for t in s.by_type})
        return [
            {"split": name, "images": s.images, "rows": s.rows, **{t: s.by_type.get(t, 0) for t in types}, "合律": s.meter_ok, "合律率": round(s.meter_ok / s.poems, 4) if s.poems else None}
            for name, s in self.splits.items()
        ]

    def summary(self) -> str:
        """A few lines for the terminal: sizes and the length distribution."""
        lines = [f"dataset → {self.out_dir}  ({self.n_images} images from {self.n_input_records} records; skipped {self.skipped or 'none'})"]
        for name, s in self.splits.items():
            share = f"  合律 {s.meter_ok}/{s.poems}" if s.poems else ""
            lines.append(f"  {name:5s}: {s.images:5d} images {s.rows:6d} rows  {dict(sorted(s.by_type.items()))}{share}")
        lines.append(f"  合律率 of the poems written: {self.meter_ok_share:.1%} (form, 平仄 and rhyme all pass)")
        ls = self.lengths
        lines.append(
            f"  tokens/row: min {ls.min}  p50 {ls.p50:.0f}  p90 {ls.p90:.0f}  max {ls.max}  (visual {ls.visual_min}–{ls.visual_max}; cutoff_len {ls.cutoff_len})"
        )
        return "\n".join(lines)


def length_stats(length_rows: list[dict[str, Any]], cutoff_len: int) -> LengthStats:
    """Distribution of total tokens per row (and the visual share) over every row."""
    totals = [r["total_tokens"] for r in length_rows]
    visual = [r["visual_tokens"] for r in length_rows]
    qs = statistics.quantiles(totals, n=10, method="inclusive") if len(totals) > 1 else [float(totals[0])] * 9
    return LengthStats(
        n=len(totals), min=min(totals), p50=float(statistics.median(totals)), p90=float(qs[8]), max=max(totals),
        mean=float(statistics.fmean(totals)), visual_min=min(visual), visual_max=max(visual), cutoff_len=cutoff_len,
    )


def load_split_report(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The split_report.json of a dataset directory."""
    return json.loads((Path(out_dir) / "split_report.json").read_text(encoding="utf-8"))


def plot_lengths(out_dir: str | os.PathLike[str], save: str | os.PathLike[str] | None = None) -> Any:
    """Histogram of the rows' token lengths per split (lengths.csv) with the cutoff_len line; optionally saved as PNG."""
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir = Path(out_dir)
    lengths = pd.read_csv(out_dir / "lengths.csv")
    cutoff = load_split_report(out_dir)["lengths"]["cutoff_len"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    groups = [(split, lengths.loc[lengths["split"] == split, "total_tokens"]) for split in SPLITS]
    groups = [(split, values) for split, values in groups if len(values)]
    ax.hist([values for _, values in groups], bins=20, stacked=True, label=[split for split, _ in groups])
    ax.axvline(cutoff, color="tab:red", linestyle="--", label=f"cutoff_len {cutoff}")
    ax.set_xlabel("tokens per row (text + visual)")
    ax.set_ylabel("rows")
    ax.legend()
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=110)
    return fig


def record_meter_ok(record: Any) -> bool:
    """合律: the record's poem passes form, 平仄 and rhyme (clean's stored report when present, else poemlib.meter)."""
    from poemlib.meter import MeterCheckError, check_annotation

    stored = record.meter
    if isinstance(stored, dict) and "error" not in stored and "form_ok" in stored:
        return all(stored.get(k) is not False for k in ("form_ok", "tone_ok", "rhyme_ok"))
    try:
        report = check_annotation(record.annotation)
    except MeterCheckError:
        return False
    return report is not None and report.ok


def count_meter_ok(splits: dict[str, SplitStats], images: dict[str, Any], assignment: dict[str, str]) -> None:
    """Fill each split's poems / meter_ok from the records written into it."""
    for sha, image in images.items():
        record = image.record
        if record.status.value != "ok" or record.annotation is None:
            continue
        stats = splits[assignment[sha]]
        stats.poems += 1
        stats.meter_ok += record_meter_ok(record)
