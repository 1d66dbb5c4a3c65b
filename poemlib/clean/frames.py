"""A clean report as named pandas tables, for the notebook (CleanReport.to_frames)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poemlib.clean.policy import METER_CHECKS
from poemlib.clean.report import DuplicateMember, InputSummary, MalformedRecord, UnfitItem, definition_for
from poemlib.schema import POEM_TYPES

if TYPE_CHECKING:
    import pandas as pd

    from poemlib.clean.report import CleanReport

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
        "chars_per_line": _histogram_table(report.chars_per_line),
        "lines_per_poem": _histogram_table(report.lines_per_poem),
        "rejected_reasons": _series_table(report.rejected_reasons),
        "flags": _series_table(report.flags),
        "repairs": _series_table(report.repairs),
    }
