"""The count report of one clean run: definitions, report models, saving and loading, token statistics, tables."""

from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from poemlib.clean.policy import METER_CHECKS
from poemlib.io import atomic_write
from poemlib.schema import POEM_TYPES

if TYPE_CHECKING:
    import pandas as pd

DEFINITIONS: dict[str, str] = {
    "records_read": "records parsed from all inputs and schema-valid after legacy conversion (ok, unfit and failed, superseded store lines included); malformed records excluded",
    "malformed": "records that could not be read or made schema-valid; each listed with file, index (0-based, JSON list) or line (1-based, JSONL) and reason; a JSON list that breaks off counts once",
    "superseded_in_store": "lines of one of our JSONL stores replaced by a later line for the same image in the same store (annotate's retry semantics); not part of dedupe",
    "candidates": "records_read - superseded_in_store: the records competing for an image",
    "distinct_images": "distinct image identities among candidates: sha256 of the file bytes when the file exists under images_root (store records carry it), else the normalised path (backslashes to '/', case kept)",
    "distinct_paths": "distinct normalised image paths among candidates (differs from distinct_images when the same bytes have several names)",
    "duplicate_groups": "identities with 2 or more candidates (every group listed with its sources and the chosen one)",
    "surplus_records": "candidates - distinct_images: records dropped by dedupe",
    "status_read": "ok/unfit/failed over records_read",
    "status_after_dedupe": "ok/unfit/failed over the chosen record of each distinct image",
    "images_found/missing/unchecked": "over distinct images: file exists under images_root / does not / no images_root given",
    "eligible": "chosen records the policy keeps (written to the clean file)",
    "rejected_by_policy": "chosen records the policy drops (written to the rejected file with reject:<reason> flags)",
    "written_rejected": "superseded_in_store + surplus_records + rejected_by_policy",
    "types_*": "ok records per poem type: read (before dedupe), after_dedupe, eligible",
    "tokens_*": "usage.total_tokens over records with a positive count (read: all records read; after_dedupe: chosen records); zero or missing counts reported as missing_or_zero",
    "meter": "per type, over chosen ok records: checks passed / checks applicable (a check answering None is not applicable); all_passed = poems with at least one applicable check and none failed",
    "meter_dropped": "per type: poems the policy dropped for a failed check (form_failed / tone_failed / rhyme_failed), and per 格律 rule (失粘, 出韵, …) how many dropped poems break it",
    "chars_per_line": "per type, over chosen ok records: characters per line (句) as the meter reads the poem (meter.lines: split at ，。！？；、 and newlines, punctuation removed) -> number of lines",
    "lines_per_poem": "per type, over chosen ok records: number of lines (句) as the meter reads the poem -> number of poems",
    "traditional": "chosen ok/unfit records whose text contains a character OpenCC maps only to a different simplified character",
    "repairs": "legacy variations tolerated during conversion, by kind",
}

# Counts fields explained by a shared definition or by their own sentence.
_SHARED_DEFINITION = {
    **dict.fromkeys(("ok_read", "unfit_read", "failed_read"), "status_read"),
    **dict.fromkeys(("ok", "unfit", "failed"), "status_after_dedupe"),
    **dict.fromkeys(("images_found", "images_missing", "images_unchecked"), "images_found/missing/unchecked"),
}
_OWN_DEFINITION = {
    "written_clean": "records written to the clean file (= eligible)",
    "inputs": "input files after expanding folders (*.json, *.jsonl), repeated files included",
    "inputs_unreadable": "input files that could not be read at all (reported with the reason; their records are not counted)",
}


def definition_for(count: str) -> str:
    """The definition text that explains a Counts field."""
    if count in DEFINITIONS:
        return DEFINITIONS[count]
    if count in _SHARED_DEFINITION:
        return DEFINITIONS[_SHARED_DEFINITION[count]]
    return _OWN_DEFINITION.get(count, "")


class InputSummary(BaseModel):
    """What was read from one input file."""

    path: str
    format: str
    records_read: int = 0
    store_records: int = 0
    legacy_records: int = 0
    malformed: int = 0
    superseded: int = 0
    error: str | None = None


class MalformedRecord(BaseModel):
    """A record that was skipped, and why."""

    file: str
    index: int | None = None
    line: int | None = None
    reason: str


class DuplicateMember(BaseModel):
    """One record of a duplicate group."""

    source: str
    status: str
    poem_type: str | None = None
    poem_title: str | None = None
    image_path: str
    meter_passed: int | None = None
    chosen: bool = False


class DuplicateGroup(BaseModel):
    """All records for one image identity seen more than once."""

    identity: str
    image_paths: list[str]
    chosen: str
    members: list[DuplicateMember]


class UnfitItem(BaseModel):
    """An image judged unfit, with the reason given."""

    source: str
    image_path: str
    reason: str


class MissingImage(BaseModel):
    """An image file referenced but not found under the images root."""

    image_path: str
    sources: list[str]


class TokenStats(BaseModel):
    """Summary of usage.total_tokens over a set of records."""

    n: int = 0
    missing_or_zero: int = 0
    sum: int = 0
    mean: float | None = None
    min: int | None = None
    p50: float | None = None
    p90: float | None = None
    max: int | None = None
    hist_edges: list[float] = Field(default_factory=list)
    hist_counts: list[int] = Field(default_factory=list)


class MeterRates(BaseModel):
    """格律 results of one poem type."""

    poems: int = 0
    meter_errors: int = 0
    form_checked: int = 0
    form_passed: int = 0
    tone_checked: int = 0
    tone_passed: int = 0
    rhyme_checked: int = 0
    rhyme_passed: int = 0
    all_passed: int = 0

    def rate(self, check: str) -> float | None:
        """Passed / checked for one of form, tone, rhyme (None when nothing was checkable)."""
        checked = getattr(self, f"{check}_checked")
        return getattr(self, f"{check}_passed") / checked if checked else None


class Counts(BaseModel):
    """The headline numbers; see DEFINITIONS."""

    inputs: int = 0
    inputs_unreadable: int = 0
    records_read: int = 0
    malformed: int = 0
    superseded_in_store: int = 0
    candidates: int = 0
    distinct_images: int = 0
    distinct_paths: int = 0
    duplicate_groups: int = 0
    surplus_records: int = 0
    ok_read: int = 0
    unfit_read: int = 0
    failed_read: int = 0
    ok: int = 0
    unfit: int = 0
    failed: int = 0
    images_found: int = 0
    images_missing: int = 0
    images_unchecked: int = 0
    eligible: int = 0
    rejected_by_policy: int = 0
    written_clean: int = 0
    written_rejected: int = 0
    traditional: int = 0


class CleanReport(BaseModel):
    """Everything one clean run counted; saved as JSON, shown in the notebook through to_frames()/plot_report()."""

    definitions: dict[str, str] = Field(default_factory=lambda: dict(DEFINITIONS))
    settings: dict[str, Any] = Field(default_factory=dict)
    counts: Counts = Field(default_factory=Counts)
    invariants: dict[str, bool] = Field(default_factory=dict)
    inputs: list[InputSummary] = Field(default_factory=list)
    malformed: list[MalformedRecord] = Field(default_factory=list)
    status_read: dict[str, int] = Field(default_factory=dict)
    status_after_dedupe: dict[str, int] = Field(default_factory=dict)
    failed_kinds_read: dict[str, int] = Field(default_factory=dict)
    failed_kinds_after_dedupe: dict[str, int] = Field(default_factory=dict)
    types_read: dict[str, int] = Field(default_factory=dict)
    types_after_dedupe: dict[str, int] = Field(default_factory=dict)
    types_eligible: dict[str, int] = Field(default_factory=dict)
    unfit: list[UnfitItem] = Field(default_factory=list)
    duplicate_groups: list[DuplicateGroup] = Field(default_factory=list)
    missing_images: list[MissingImage] = Field(default_factory=list)
    tokens_read: TokenStats = Field(default_factory=TokenStats)
    tokens_after_dedupe: TokenStats = Field(default_factory=TokenStats)
    meter: dict[str, MeterRates] = Field(default_factory=dict)
    meter_dropped: dict[str, dict[str, int]] = Field(default_factory=dict)
    chars_per_line: dict[str, dict[str, int]] = Field(default_factory=dict)
    lines_per_poem: dict[str, dict[str, int]] = Field(default_factory=dict)
    rejected_reasons: dict[str, int] = Field(default_factory=dict)
    flags: dict[str, int] = Field(default_factory=dict)
    repairs: dict[str, int] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_frames(self) -> dict[str, Any]:
        """Named pandas tables of the report (summary, inputs, status, types, meter, tokens, duplicates, …)."""
        return report_frames(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report as indented UTF-8 JSON (atomically)."""
        atomic_write(path, self.model_dump_json(indent=2))


def load_report(path: str | os.PathLike[str]) -> CleanReport:
    """Read a saved report."""
    return CleanReport.model_validate_json(Path(path).read_text(encoding="utf-8"))


def token_stats(values: array, missing: int) -> TokenStats:
    """Count, sum, mean, percentiles and a histogram of positive token counts (`missing` counted apart)."""
    if not values:
        return TokenStats(missing_or_zero=missing)
    import numpy as np

    arr = np.frombuffer(values, dtype=np.int64)
    counts, edges = np.histogram(arr, bins=min(30, max(1, len(np.unique(arr)))))
    return TokenStats(
        n=int(arr.size),
        missing_or_zero=missing,
        sum=int(arr.sum()),
        mean=float(arr.mean()),
        min=int(arr.min()),
        p50=float(np.percentile(arr, 50)),
        p90=float(np.percentile(arr, 90)),
        max=int(arr.max()),
        hist_edges=[float(e) for e in edges],
        hist_counts=[int(c) for c in counts],
    )


# ---------------------------------------------------------------------------
# The report as pandas tables (CleanReport.to_frames)
# ---------------------------------------------------------------------------

_METER_COLUMNS = ["poem_type", "poems", "form_rate", "tone_rate", "rhyme_rate", "form_checked", "tone_checked", "rhyme_checked", "all_passed", "meter_errors"]


def _counts_table(columns: dict[str, dict[str, int]], index: list[str], name: str | None = None) -> pd.DataFrame:
    """Integer columns over a fixed index (absent keys count 0)."""
    import pandas as pd

    table = pd.DataFrame(columns, index=index, columns=list(columns)).fillna(0).astype(int)
    if name:
        table.index.name = name
    return table


def _meter_table(report: CleanReport) -> pd.DataFrame:
    """Pass rates and checked counts per poem type."""
    import pandas as pd

    rows = []
    for ptype, rates in report.meter.items():
        row: dict[str, Any] = {"poem_type": ptype, "poems": rates.poems}
        for check in METER_CHECKS:
            row[f"{check}_rate"] = rates.rate(check)
            row[f"{check}_checked"] = getattr(rates, f"{check}_checked")
        row["all_passed"] = rates.all_passed
        row["meter_errors"] = rates.meter_errors
        rows.append(row)
    return pd.DataFrame(rows, columns=_METER_COLUMNS).set_index("poem_type")


def _histogram_table(data: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Poem type × integer bucket counts (chars per line, lines per poem), buckets in numeric order."""
    import pandas as pd

    if not data:
        return pd.DataFrame()
    table = pd.DataFrame(data).T.fillna(0).astype(int)
    table = table[sorted(table.columns, key=int)]
    table.index.name = "poem_type"
    return table


def _models_table(items: list[Any], model: type) -> pd.DataFrame:
    """One row per report item, with the model's columns even when there are none."""
    import pandas as pd

    return pd.DataFrame([item.model_dump() for item in items], columns=list(model.model_fields))


def _series_table(data: dict[str, int]) -> pd.DataFrame:
    """A name -> records count table."""
    import pandas as pd

    return pd.Series(data, name="records", dtype=int).to_frame()


def _detail_tables(report: CleanReport) -> dict[str, pd.DataFrame]:
    """Tables that list records: inputs, unfit, malformed, duplicates, missing images."""
    import pandas as pd

    dup_rows = [
        {"group": i, "identity": g.identity, **m.model_dump()}
        for i, g in enumerate(report.duplicate_groups, start=1)
        for m in g.members
    ]
    missing = [{"image_path": m.image_path, "sources": ", ".join(m.sources)} for m in report.missing_images]
    return {
        "inputs": _models_table(report.inputs, InputSummary),
        "unfit": _models_table(report.unfit, UnfitItem),
        "malformed": _models_table(report.malformed, MalformedRecord),
        "duplicates": pd.DataFrame(dup_rows, columns=["group", "identity", *DuplicateMember.model_fields]),
        "missing_images": pd.DataFrame(missing, columns=["image_path", "sources"]),
    }


def report_frames(report: CleanReport) -> dict[str, pd.DataFrame]:
    """Named pandas tables of the report (summary, inputs, status, types, meter, tokens, duplicates, …)."""
    import pandas as pd

    counts = report.counts.model_dump()
    summary = pd.DataFrame([{"count": k, "value": v, "definition": definition_for(k)} for k, v in counts.items()]).set_index("count")
    kinds = sorted(set(report.failed_kinds_read) | set(report.failed_kinds_after_dedupe))
    tokens = pd.DataFrame(
        [
            {"set": name, **stats.model_dump(exclude={"hist_edges", "hist_counts"})}
            for name, stats in (("read", report.tokens_read), ("after_dedupe", report.tokens_after_dedupe))
        ]
    ).set_index("set")
    details = _detail_tables(report)
    return {
        "summary": summary,
        "invariants": pd.Series(report.invariants, name="holds").to_frame(),
        "inputs": details["inputs"],
        "status": _counts_table({"read": report.status_read, "after_dedupe": report.status_after_dedupe}, ["ok", "unfit", "failed"]),
        "types": _counts_table(
            {"read": report.types_read, "after_dedupe": report.types_after_dedupe, "eligible": report.types_eligible}, list(POEM_TYPES), "poem_type"
        ),
        "failed_kinds": _counts_table({"read": report.failed_kinds_read, "after_dedupe": report.failed_kinds_after_dedupe}, kinds, "error_kind"),
        "unfit": details["unfit"],
        "malformed": details["malformed"],
        "duplicates": details["duplicates"],
        "missing_images": details["missing_images"],
        "tokens": tokens,
        "meter": _meter_table(report),
        "meter_dropped": _meter_dropped_table(report),
        "chars_per_line": _histogram_table(report.chars_per_line),
        "lines_per_poem": _histogram_table(report.lines_per_poem),
        "rejected_reasons": _series_table(report.rejected_reasons),
        "flags": _series_table(report.flags),
        "repairs": _series_table(report.repairs),
    }


def _meter_dropped_table(report: CleanReport) -> pd.DataFrame:
    """Poems dropped by the meter policy: one row per type, a column per check / rule."""
    import pandas as pd

    frame = pd.DataFrame.from_dict(report.meter_dropped, orient="index").fillna(0).astype(int)
    frame.index.name = "poem_type"
    return frame
