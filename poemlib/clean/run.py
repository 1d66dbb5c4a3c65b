"""The one call: read any mix of stores and legacy shards, dedupe, meter-check, write clean + rejected JSONL and
the count report (see the package docstring for what each count means)."""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from poemlib.clean import meter_pool
from poemlib.clean.dedupe import Chosen, Deduper
from poemlib.clean.output import ChosenPass, RejectedLines
from poemlib.clean.paths import ImageResolver, InputFile, expand_inputs
from poemlib.clean.policy import DEDUPE_POLICIES, CleanPolicy, load_policy
from poemlib.clean.reader import Reader
from poemlib.clean.report import CleanReport, MeterRates, token_stats
from poemlib.config import resolve_path
from poemlib.io import atomic_write
from poemlib.progress import progress_bar
from poemlib.schema import POEM_TYPES

_STATUSES = ("ok", "unfit", "failed")


class _Plan(NamedTuple):
    """A clean run's checked arguments."""

    files: list[InputFile]
    out: Path
    rejected: Path
    report: Path | None
    root: Path | None
    policy: CleanPolicy
    dedupe: str
    workers: int
    progress: bool | None


def clean(
    inputs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    report: str | os.PathLike[str] | None = None,
    *,
    images_root: str | os.PathLike[str] | None = None,
    dedupe: str = "latest",
    policy: Mapping[str, Any] | CleanPolicy | str | os.PathLike[str] | None = None,
    rejected: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    meter: str | None = None,
) -> CleanReport:
    """Read any mix of stores and legacy shards, dedupe, meter-check, write clean + rejected JSONL and the report.

    ``rejected`` defaults to ``rejected.jsonl`` beside ``out``. ``workers``: processes sharing the meter checks, this
    one included (1 = in-process only; default: `meter_pool.default_workers()`, or 1 for inputs under PARALLEL_MIN_BYTES).
    ``meter``: 'strict' or 'flag' (`CleanPolicy.with_meter`) over the policy. ``progress``: show progress bars (None: unless POEMLIB_PROGRESS=0; see `poemlib.progress`). Inputs
    and the images root are found by `poemlib.config.resolve_path` (current directory first); outputs go where given.
    Returns the CleanReport (also saved to ``report``).
    """
    started = time.perf_counter()
    plan = _plan(inputs, out, report, images_root, dedupe, load_policy(policy).with_meter(meter), rejected, workers, progress)
    # Many small long-lived objects, no reference cycles: the cyclic GC would only rescan them over and over.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        rep = _run(plan)
    finally:
        if gc_was_enabled:
            gc.enable()
    rep.elapsed_s = round(time.perf_counter() - started, 3)
    if plan.report is not None:
        rep.save(plan.report)
    return rep


def _plan(
    inputs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    report: str | os.PathLike[str] | None,
    images_root: str | os.PathLike[str] | None,
    dedupe: str,
    policy: Mapping[str, Any] | CleanPolicy | str | os.PathLike[str] | None,
    rejected: str | os.PathLike[str] | None,
    workers: int | None,
    progress: bool | None,
) -> _Plan:
    """Check the arguments of `clean` (errors name the argument) and fill in the defaults."""
    if dedupe not in DEDUPE_POLICIES:
        raise ValueError(f"dedupe must be one of {DEDUPE_POLICIES}, got {dedupe!r}")
    loaded = load_policy(policy)
    # Outputs are written where the caller says (relative to the current directory), even before they exist.
    out_path = Path(out)
    rejected_path = Path(rejected) if rejected is not None else out_path.with_name("rejected.jsonl")
    if rejected_path.resolve() == out_path.resolve():
        raise ValueError(f"the rejected file must differ from the clean file ({out})")
    files = expand_inputs(inputs)
    root = resolve_path(images_root, prefer_cwd=True) if images_root is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"images root is not a folder: {images_root}")
    if workers is None:
        big = sum(f.path.stat().st_size for f in files) >= meter_pool.PARALLEL_MIN_BYTES
        workers = meter_pool.default_workers() if big else 1
    report_path = Path(report) if report is not None else None
    return _Plan(files, out_path, rejected_path, report_path, root, loaded, dedupe, workers, progress)


def _run(plan: _Plan) -> CleanReport:
    """Both passes and the report (without elapsed time)."""
    rep = CleanReport(
        settings={
            "inputs": [f.label for f in plan.files],
            "images_root": str(plan.root) if plan.root else None,
            "dedupe": plan.dedupe,
            "policy": plan.policy.model_dump(),
            "workers": plan.workers,
        }
    )
    repairs: Counter = Counter()
    reader = Reader(ImageResolver(plan.root), rep, repairs)
    meters = meter_pool.MeterQueue(plan.policy.meter_mode, plan.workers)
    reject = RejectedLines(plan.rejected)
    chosen_pass = ChosenPass(plan.policy, meters, reject)
    try:
        superseded, chosen = _read_and_dedupe(plan, reader, meters, reject)
        meters.seal(needed=(item.order for entry in chosen.values() for item in entry.group or (entry.item,)))
        with progress_bar(len(chosen), desc="clean: meter + write", unit="image", enabled=plan.progress) as bar:
            atomic_write(plan.out, chosen_pass.output_lines(chosen, bar))
            bar.update(len(chosen) - bar.n)
        atomic_write(plan.rejected, reject.chunks())
    finally:
        meters.close()
        reject.close()
    _fill_report(rep, plan, reader, chosen_pass, reject, superseded=superseded, distinct=len(chosen))
    rep.repairs = dict(sorted(repairs.items()))
    rep.outputs = {"clean": str(plan.out), "rejected": str(plan.rejected)}
    if plan.report is not None:
        rep.outputs["report"] = str(plan.report)
    return rep


def _read_and_dedupe(plan: _Plan, reader: Reader, meters: meter_pool.MeterQueue, reject: RejectedLines) -> tuple[int, dict[str, Chosen]]:
    """The reading pass: superseded store lines and dedupe losers rejected at once; (superseded count, chosen)."""
    deduper = Deduper(plan.dedupe, meters, reject)
    superseded = 0
    with progress_bar(len(plan.files), desc="clean: read", unit="file", enabled=plan.progress) as bar:
        # A store's records come out only once its file is read (the last line per image wins); queueing each one's
        # meter check as it is read keeps the workers busy meanwhile (the few superseded ones are discarded).
        for item, is_superseded in reader.items(plan.files, on_file_done=lambda: bar.update(1), on_pending=meters.submit):
            if is_superseded:
                superseded += 1
                meters.discard(item)
                reject(item, ["superseded"])
            else:
                deduper.add(item)
    return superseded, deduper.chosen


def _fill_report(rep: CleanReport, plan: _Plan, reader: Reader, done: ChosenPass, reject: RejectedLines, *, superseded: int, distinct: int) -> None:
    """Copy the counts of both passes into the report and check the invariants."""
    counts = rep.counts
    counts.superseded_in_store = superseded
    for name in ("images_found", "images_missing", "images_unchecked", "eligible", "rejected_by_policy", "traditional"):
        setattr(counts, name, done.tally[name])
    counts.written_rejected = reject.count
    counts.written_clean = done.tally["eligible"]
    counts.inputs = len(plan.files)
    counts.inputs_unreadable = sum(1 for s in rep.inputs if s.format.startswith("unreadable"))
    counts.records_read = sum(s.records_read for s in rep.inputs)
    counts.malformed = len(rep.malformed)
    counts.candidates = counts.records_read - counts.superseded_in_store
    counts.distinct_images = distinct
    counts.distinct_paths = len(done.paths_seen)
    counts.duplicate_groups = len(done.duplicate_groups)
    counts.surplus_records = counts.candidates - counts.distinct_images
    counts.ok_read, counts.unfit_read, counts.failed_read = (reader.status[s] for s in _STATUSES)
    counts.ok, counts.unfit, counts.failed = (done.status[s] for s in _STATUSES)
    rep.status_read = {s: reader.status[s] for s in _STATUSES}
    rep.status_after_dedupe = {s: done.status[s] for s in _STATUSES}
    rep.failed_kinds_read = dict(sorted(reader.failed_kinds.items()))
    rep.failed_kinds_after_dedupe = dict(sorted(done.failed_kinds.items()))
    rep.types_read = {t: reader.types[t] for t in POEM_TYPES}
    rep.types_after_dedupe = {t: done.types[t] for t in POEM_TYPES}
    rep.types_eligible = {t: done.types_eligible[t] for t in POEM_TYPES}
    rep.unfit = done.unfit
    rep.duplicate_groups = done.duplicate_groups
    rep.meter = {t: MeterRates(**done.meter[t]) for t in POEM_TYPES if t in done.meter}
    rep.meter_dropped = {t: dict(done.meter_dropped[t].most_common()) for t in POEM_TYPES if t in done.meter_dropped}
    rep.chars_per_line = {t: {str(k): v for k, v in sorted(done.chars[t].items())} for t in POEM_TYPES if t in done.chars}
    rep.lines_per_poem = {t: {str(k): v for k, v in sorted(done.lines[t].items())} for t in POEM_TYPES if t in done.lines}
    rep.tokens_read = token_stats(reader.tokens, reader.tokens_missing)
    rep.tokens_after_dedupe = token_stats(done.tokens, done.tally["tokens_missing"])
    rep.missing_images = done.missing_images()
    rep.rejected_reasons = dict(reject.reasons.most_common())
    rep.flags = dict(done.flags.most_common())
    rep.invariants = _invariants(rep)


def _invariants(rep: CleanReport) -> dict[str, bool]:
    """The identities every run must satisfy (a broken one makes `poemlib clean` exit 1)."""
    c = rep.counts
    return {
        "records_read == superseded_in_store + distinct_images + surplus_records": c.records_read
        == c.superseded_in_store + c.distinct_images + c.surplus_records,
        "distinct_images == ok + unfit + failed": c.distinct_images == c.ok + c.unfit + c.failed,
        "records_read == ok_read + unfit_read + failed_read": c.records_read == c.ok_read + c.unfit_read + c.failed_read,
        "distinct_images == eligible + rejected_by_policy": c.distinct_images == c.eligible + c.rejected_by_policy,
        "records_read == written_clean + written_rejected": c.records_read == c.written_clean + c.written_rejected,
        "surplus_records == sum(group size - 1)": c.surplus_records == sum(len(g.members) - 1 for g in rep.duplicate_groups),
        "distinct_images == images_found + images_missing + images_unchecked": c.distinct_images
        == c.images_found + c.images_missing + c.images_unchecked,
    }
