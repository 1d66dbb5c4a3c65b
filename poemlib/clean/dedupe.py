"""Dedupe by image identity: the chosen record per image and the latest / first / best rules.

``latest``: the record read last (inputs in the order given, then position within the file; timestamps are not
used because legacy times are file mtimes). ``first``: the record read first. ``best``: the ok record passing the
most of the three meter checks, an ok record before an unfit one, ties to the later record. In every policy a
failed record is chosen only when all records of its image failed.
"""

from __future__ import annotations

from collections.abc import Callable

from poemlib.clean.meter_pool import MeterQueue
from poemlib.clean.meter_result import MeterResult
from poemlib.clean.records import Item
from poemlib.clean.report import DuplicateMember

_STATE_RANK = {"found": 2, "missing": 1, "unchecked": 0}

# reject(item, reasons, meter=...) writes a record to the rejected file.
Reject = Callable[..., None]


class Chosen:
    """The record currently chosen for an identity, plus what the group report needs."""

    __slots__ = ("group", "image_state", "item", "members", "meter", "paths")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.meter: MeterResult | None = None
        self.paths = list(item.paths)
        self.image_state = item.image_state
        self.members: list[DuplicateMember] | None = None
        self.group: list[Item] | None = None  # under `best`: every record of a duplicated image, decided at output

    def absorb_paths(self, item: Item, *, first: bool) -> None:
        """Add another record's paths (in front when it is the chosen one) and its image state."""
        self.paths = list(dict.fromkeys([*item.paths, *self.paths] if first else [*self.paths, *item.paths]))
        if _STATE_RANK[item.image_state] > _STATE_RANK[self.image_state]:
            self.image_state = item.image_state


def member(item: Item, meter: MeterResult | None) -> DuplicateMember:
    """A record's row in its duplicate group."""
    return DuplicateMember(
        source=item.source,
        status=item.status,
        poem_type=item.ptype,
        poem_title=item.title,
        image_path=item.rel_path,
        meter_passed=meter.passed if meter is not None else None,
    )


def new_wins(new: Item, new_meter: MeterResult | None, old: Item, old_meter: MeterResult | None, policy: str) -> bool:
    """Whether a newly read record replaces the chosen one under a dedupe policy."""
    if (new.status == "failed") != (old.status == "failed"):
        return old.status == "failed"
    if policy == "first":
        return new.order < old.order
    if policy == "latest":
        return new.order > old.order
    new_key = (new.status == "ok", new_meter.passed if new_meter else 0, new.order)
    old_key = (old.status == "ok", old_meter.passed if old_meter else 0, old.order)
    return new_key > old_key


def decide_best(entry: Chosen, meters: MeterQueue, reject: Reject) -> None:
    """Choose among all versions of an image by meter checks passed (ok before unfit, ties to the later record)."""
    group = entry.group or []
    results = [meters.get(item) if item.status == "ok" else None for item in group]
    best = 0
    for i in range(1, len(group)):
        if new_wins(group[i], results[i], group[best], results[best], "best"):
            best = i
    entry.item, entry.meter, entry.group = group[best], results[best], None
    entry.members = [member(item, meter) for item, meter in zip(group, results)]
    entry.paths = list(group[best].paths)
    entry.image_state = group[best].image_state
    for i, item in enumerate(group):
        if i != best:
            entry.absorb_paths(item, first=False)
            reject(item, ["duplicate"], meter=results[i])


class Deduper:
    """The chosen record per image identity, in the order each image was first read; losers go to `reject`."""

    def __init__(self, policy: str, meters: MeterQueue, reject: Reject) -> None:
        self.policy = policy
        self.meters = meters
        self.reject = reject
        self.chosen: dict[str, Chosen] = {}

    def add(self, item: Item) -> None:
        """Compete a newly read (not superseded) record for its image."""
        current = self.chosen.get(item.identity)
        if current is None:
            self.chosen[item.identity] = Chosen(item)
            self.meters.submit(item)
            return
        if self.policy == "best":
            # Decided when the output is written, once every version's meter result is in.
            if current.group is None:
                current.group = [current.item]
            current.group.append(item)
            self.meters.submit(item)
            return
        if current.members is None:
            current.members = [member(current.item, None)]
        current.members.append(member(item, None))
        if new_wins(item, None, current.item, None, self.policy):
            loser, current.item = current.item, item
            current.absorb_paths(item, first=True)
            self.meters.submit(item)
        else:
            loser = item
            current.absorb_paths(item, first=False)
        self.meters.discard(loser)
        self.reject(loser, ["duplicate"])
