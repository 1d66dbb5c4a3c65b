"""Meter checks of the chosen poems, shared with worker processes while the inputs are still being read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poemlib.clean.meter_result import (
    MeterResult,
    Order,
    Poem,
    meter_batch,
    meter_result,
)

if TYPE_CHECKING:
    from poemlib.clean.records import Item

# Inputs smaller than this are meter-checked in-process; larger ones by worker processes (the meter dominates).
PARALLEL_MIN_BYTES = 4 << 20
METER_BATCH = 256
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process (/proc/sys/fs/pipe-max-size)


def default_workers() -> int:
    """Processes sharing the meter checks, this one included: one more than the CPUs this process may use, at most 8
    (1 on a single CPU, where a worker would only add the cost of sending poems and results)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    # This process alone reads, dedupes and writes; a worker for every CPU lets the operating system give the workers
    # whatever CPU it leaves (on 2 CPUs, 3 processes cleaned 100,000 records 1.5-4 s faster than 2 in each of five
    # alternating runs).
    return 1 if cpus <= 1 else min(8, cpus + 1)


def _widen_pipes(pool: Any) -> None:
    """Let the pool's pipes hold a whole batch (Linux; elsewhere, or without these Pool internals, nothing changes).

    A batch's results are ~0.5 MB. Through a 64 KB pipe, this process's result thread needs the GIL again for every
    64 KB, and it waits for it while this process reads or writes; a worker meanwhile holds its results unsent and
    takes no new batch. Traced on clean_scale's 100,000 records, workers sat idle for up to 2 s at a time.
    """
    try:
        import fcntl

        connections = (pool._inqueue._reader, pool._inqueue._writer, pool._outqueue._reader, pool._outqueue._writer)
        for connection in connections:
            fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


class MeterQueue:
    """Meter checks of the chosen poems, shared between worker processes and the main process.

    Every ok record that becomes the chosen one for its image is queued as soon as it is read; full batches go to
    the workers (a few in flight each) while the inputs are still being read. Once they are read, the records left
    are batched again in the order the output will need them (a re-annotated image keeps its first place in the
    output, but its record came late). While the output is written, the main process takes results as it goes: a
    batch it needs that no worker has got to it checks itself, and rather than wait for a worker it checks the
    batch needed last. A record that later loses its image is dropped from the queue. Without a pool (small
    inputs, workers=1) or for a batch whose worker failed, `get` checks in-process.
    """

    def __init__(self, mode: str, workers: int) -> None:
        self.mode = mode
        self.pool = None
        self._max_in_flight = 2 * (workers - 1)
        if workers > 1:
            import multiprocessing as mp

            # fork (where there is one): workers start small because they are forked before the inputs are read, and
            # unlike spawn/forkserver it does not re-import __main__ (a script without a __main__ guard stays safe).
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self.pool = mp.get_context(method).Pool(workers - 1)
            _widen_pipes(self.pool)
        self._open: list[tuple[Order, Poem]] = []
        self._batches: list[list[tuple[Order, Poem]] | None] = []  # None once sent or done
        self._queued: list[int] = []  # indexes of sealed batches not yet sent, in order
        self._in_flight: dict[int, Any] = {}  # batch index -> AsyncResult
        self._where: dict[Order, int] = {}  # order of a wanted record -> its batch
        self._done: dict[Order, MeterResult] = {}
        self._submits = 0

    def submit(self, item: Item) -> None:
        """Queue an ok record's poem (no-op without a pool, or when it is already queued or checked)."""
        if self.pool is None:
            return
        self._submits += 1
        queued = item.status == "ok" and item.order not in self._where and item.order not in self._done
        if (queued and self._add(item.order, (item.ptype, item.content, item.title))) or not self._submits % METER_BATCH:  # type: ignore[arg-type]
            # Also every METER_BATCH calls: when a store file ends, its ~40,000 records already queued come back
            # through dedupe, and without a pump meanwhile the workers sat idle for half a second.
            self._pump()

    def _add(self, key: Order, poem: Poem) -> bool:
        """Put a poem in the open batch; True when that filled the batch and queued it."""
        self._where[key] = len(self._batches)  # the open batch's index once it is queued
        self._open.append((key, poem))
        if len(self._open) < METER_BATCH:
            return False
        self._close_open()
        return True

    def _close_open(self) -> None:
        """Queue the open batch."""
        if self._open:
            self._queued.append(len(self._batches))
            self._batches.append(self._open)
            self._open = []

    def seal(self, needed: Iterable[Order] = ()) -> None:
        """Close the open batch (call once the inputs are read); `needed`: the records' keys in the order the output
        will ask for them, to batch the records not yet sent again in that order."""
        self._close_open()
        waiting = {key: poem for index in self._queued for key, poem in self._wanted(index)}
        rank = {key: position for position, key in enumerate(needed) if key in waiting}
        self._queued = []
        for key in sorted(waiting, key=lambda key: rank.get(key, len(rank))):  # stable: the rest keep their order
            self._add(key, waiting[key])
        self._close_open()

    def discard(self, item: Item) -> None:
        """A record lost its image: its result is not wanted."""
        self._where.pop(item.order, None)
        self._done.pop(item.order, None)

    def _wanted(self, index: int) -> list[tuple[Order, Poem]]:
        """Take a batch out of the queue, less the records no longer wanted."""
        batch, self._batches[index] = self._batches[index], None
        return [(key, poem) for key, poem in batch or () if self._where.get(key) == index]

    def _harvest(self, index: int, *, wait: bool) -> None:
        """Store a worker's results for a batch (when ready, or waiting for it)."""
        result = self._in_flight.get(index)
        if result is None or not (wait or result.ready()):
            return
        del self._in_flight[index]
        try:
            keys, meters = result.get()
        except Exception:  # a dead worker: those poems are checked in-process by get()
            return
        for key, meter in zip(keys, meters):
            if self._where.get(key) == index:
                del self._where[key]
                self._done[key] = meter

    def _pump(self) -> None:
        """Collect finished batches and keep every worker supplied (with the batches queued first)."""
        for index in [i for i, r in self._in_flight.items() if r.ready()]:
            self._harvest(index, wait=False)
        while self._queued and len(self._in_flight) < self._max_in_flight:
            index = self._queued.pop(0)
            work = self._wanted(index)
            if work:
                keys = [k for k, _ in work]
                self._in_flight[index] = self.pool.apply_async(meter_batch, (keys, [p for _, p in work], self.mode))  # type: ignore[union-attr]

    def _check_batch_here(self, index: int) -> None:
        """Check a batch no worker has taken in this process."""
        self._queued.remove(index)
        for key, (ptype, content, title) in self._wanted(index):
            del self._where[key]
            self._done[key] = meter_result(ptype, content, title, self.mode)

    def get(self, item: Item) -> MeterResult:
        """The meter result of an ok record (from a worker, checked here with the rest of its batch, or checked now)."""
        index = self._where.get(item.order)
        if self.pool is not None:
            # Every time, not only when this record is still wanted: taking finished results without sending more
            # would leave the workers idle while this process walks through results they already made.
            self._pump()
            if index is not None:  # still wanted (a worker may have just delivered it)
                while index in self._in_flight and self._queued and not self._in_flight[index].ready():
                    # Rather than wait for a worker, check the batch needed last: its lines are written last, so
                    # little is left for this process alone once the workers run out of batches.
                    self._check_batch_here(self._queued[-1])
                    self._pump()
                if index in self._in_flight:
                    self._harvest(index, wait=True)
                elif self._batches[index] is not None:
                    self._check_batch_here(index)
        meter = self._done.pop(item.order, None)
        self._where.pop(item.order, None)
        return meter if meter is not None else meter_result(item.ptype, item.content, item.title, self.mode)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the worker processes."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
