"""The pass over the chosen records: meter results, policy verdicts, output lines and the after-dedupe counts."""

from __future__ import annotations

import tempfile
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poemlib.clean.dedupe import Chosen, decide_best
from poemlib.clean.meter_pool import MeterQueue
from poemlib.clean.meter_result import MeterResult, violation_rules
from poemlib.clean.policy import CleanPolicy
from poemlib.clean.records import Item
from poemlib.clean.report import DuplicateGroup, MissingImage, UnfitItem
from poemlib.clean.traditional import has_traditional


class RejectedLines:
    """Every record not written to the clean file, with `reject:<reason>` flags, in the order rejected.

    Lines are spooled to an anonymous temporary file beside the target while clean runs (rejects arrive during both
    passes) and handed to `poemlib.io.atomic_write` at the end by `chunks()`.
    """

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self._spool = tempfile.TemporaryFile(dir=target.parent, buffering=1 << 20)
        self.reasons: Counter = Counter()
        self.count = 0

    def __call__(self, item: Item, reasons: list[str], *, meter: MeterResult | None = None, flags: list[str] | None = None) -> None:
        """Write one rejected record."""
        self.reasons.update(reasons)
        self.count += 1
        self._spool.write(item.to_json(meter=meter, flags=[*(flags or []), *(f"reject:{r}" for r in reasons)]) + b"\n")

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The spooled lines, from the start."""
        self._spool.seek(0)
        while chunk := self._spool.read(size):
            yield chunk

    def close(self) -> None:
        """Drop the spool."""
        self._spool.close()


class ChosenPass:
    """Meter, policy and output of the one chosen record per image, counting as it goes."""

    def __init__(self, policy: CleanPolicy, meters: MeterQueue, reject: RejectedLines) -> None:
        self.policy = policy
        # per meter check: the MeterResult field, the tally keys, the flag/reason, and whether to flag and drop a failure
        self._rule_names = [(f"{r.check}_ok", f"{r.check}_checked", f"{r.check}_passed", f"{r.check}_failed", r.flag, r.drop) for r in policy.meter_rules()]
        self.meters = meters
        self.reject = reject
        self.tally: Counter = Counter()  # images_*, traditional, eligible, rejected_by_policy, tokens_missing
        self.status: Counter = Counter()
        self.failed_kinds: Counter = Counter()
        self.types: Counter = Counter()
        self.types_eligible: Counter = Counter()
        self.flags: Counter = Counter()
        self.meter: dict[str, Counter] = defaultdict(Counter)
        self.meter_dropped: dict[str, Counter] = defaultdict(Counter)  # per type: poems dropped by each check / violation rule
        self.tokens = array("q")
        self.chars: dict[str, Counter] = defaultdict(Counter)
        self.lines: dict[str, Counter] = defaultdict(Counter)
        self.paths_seen: set[str] = set()
        self.missing_sources: dict[str, list[str]] = {}
        self.unfit: list[UnfitItem] = []
        self.duplicate_groups: list[DuplicateGroup] = []

    def output_lines(self, chosen: dict[str, Chosen], progress: Any = None) -> Iterator[bytes]:
        """The clean file's lines, in the order each image was first read (rejected records go to `reject`)."""
        for done, (identity, entry) in enumerate(chosen.items(), start=1):
            if entry.group is not None:
                decide_best(entry, self.meters, self.reject)
            line = self._judge(identity, entry)
            if line is not None:
                yield line
            if progress is not None and done % 1000 == 0:
                progress.update(1000)

    def _judge(self, identity: str, entry: Chosen) -> bytes | None:
        """Count one chosen record and apply the policy: its clean line, or None when rejected."""
        item = entry.item
        self._count(entry)
        flags, reasons = self._image_verdict(identity, entry)
        meter = None
        if item.status == "failed":
            self.failed_kinds[item.error_kind] += 1
            if self.policy.drop_failed:
                reasons.append("failed")
        elif item.status == "unfit":
            self.unfit.append(UnfitItem(source=item.source, image_path=item.rel_path, reason=item.content or ""))
            if self.policy.drop_unfit:
                reasons.append("unfit")
        else:
            meter = entry.meter if entry.meter is not None else self.meters.get(item)
            self._meter_verdict(item.ptype, meter, flags, reasons)  # type: ignore[arg-type]
        self.flags.update(flags)
        line = None
        if reasons:
            self.tally["rejected_by_policy"] += 1
            self.reject(item, reasons, meter=meter, flags=flags)
        else:
            self.tally["eligible"] += 1
            if item.status == "ok":
                self.types_eligible[item.ptype] += 1
            line = item.to_json(paths=entry.paths, meter=meter, flags=flags) + b"\n"
        if entry.members is not None:
            for m in entry.members:
                m.chosen = m.source == item.source
            self.duplicate_groups.append(DuplicateGroup(identity=identity, image_paths=entry.paths, chosen=item.source, members=entry.members))
        return line

    def _count(self, entry: Chosen) -> None:
        """Status, paths and tokens of a chosen record."""
        item = entry.item
        self.status[item.status] += 1
        self.paths_seen.update(entry.paths)
        if entry.members is not None:
            self.paths_seen.update(m.image_path for m in entry.members)
        if item.tokens > 0:
            self.tokens.append(item.tokens)
        else:
            self.tally["tokens_missing"] += 1

    def _image_verdict(self, identity: str, entry: Chosen) -> tuple[list[str], list[str]]:
        """(flags, reject reasons) from the image file, the identity, dedupe and the script of the text."""
        item = entry.item
        flags: list[str] = []
        reasons: list[str] = []
        self.tally[f"images_{entry.image_state}"] += 1
        if entry.image_state == "missing":
            flags.append("image_missing")
            if self.policy.drop_missing_image:
                reasons.append("image_missing")
            self.missing_sources[item.rel_path] = [m.source for m in entry.members] if entry.members else [item.source]
        if identity.startswith("path:"):
            flags.append("path_identity")
        if entry.members is not None:
            flags.append("deduplicated")
        if item.content is not None and (has_traditional(item.content) or has_traditional(item.title or "")):
            self.tally["traditional"] += 1
            flags.append("traditional_chars")
        return flags, reasons

    def _meter_verdict(self, ptype: str, meter: MeterResult, flags: list[str], reasons: list[str]) -> None:
        """Count a poem's meter results for its type and add the policy's flags and reject reasons."""
        self.types[ptype] += 1
        tally = self.meter[ptype]
        tally["poems"] += 1
        if meter.error:
            tally["meter_errors"] += 1
            flags.append("meter_error")
        failed_any = checked_any = dropped = False
        for ok_field, checked, passed, failed, flag, drop in self._rule_names:
            value = getattr(meter, ok_field)
            if value is None:
                continue
            checked_any = True
            tally[checked] += 1
            if value is True:
                tally[passed] += 1
                continue
            failed_any = True
            if flag:
                flags.append(failed)
            if drop:
                dropped = True
                reasons.append(failed)
                self.meter_dropped[ptype][failed] += 1
        if dropped:
            self.meter_dropped[ptype].update(violation_rules(meter))
        if checked_any and not failed_any and not meter.error:
            tally["all_passed"] += 1
        self.lines[ptype][len(meter.line_lengths)] += 1
        self.chars[ptype].update(meter.line_lengths)

    def missing_images(self) -> list[MissingImage]:
        """The missing image files with the sources naming them."""
        return [MissingImage(image_path=p, sources=s) for p, s in self.missing_sources.items()]
