"""What the server saw: request counts by image, outcome, endpoint and recording answered, concurrency, arrival
times, and the log of revision requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServerStats:
    """What the server saw. `requests` and `peak_concurrency` count model calls (generateContent and its stream).

    `by_answer` counts the recordings answered ('draft', 'reference', 'unknown'); `revisions` logs every revision
    request answered (identity, round, message, the draft's violations, those named and missing, answer, fault);
    `mismatches` holds the note of every answer whose form differs from the one requested.
    """

    requests: int = 0
    peak_concurrency: int = 0
    in_flight: int = 0
    by_digest: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    batch_requests: int = 0
    request_times: list[float] = field(default_factory=list)
    by_answer: Counter[str] = field(default_factory=Counter)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


class StatsBook:
    """The current `ServerStats`, updated under one lock from the server's threads and event loop."""

    def __init__(self) -> None:
        self.current = ServerStats()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Zero the counters (requests still in flight keep being tracked)."""
        with self._lock:
            in_flight = self.current.in_flight
            self.current = ServerStats(in_flight=in_flight, peak_concurrency=in_flight)

    def endpoint(self, name: str) -> None:
        """Count one call of an endpoint."""
        with self._lock:
            self.current.by_endpoint[name] += 1

    def model_call_started(self, endpoint: str) -> None:
        """Count a generateContent call arriving now and track it as in flight."""
        arrived = time.monotonic()
        with self._lock:
            stats = self.current
            stats.requests += 1
            stats.by_endpoint[endpoint] += 1
            stats.request_times.append(arrived)
            stats.in_flight += 1
            stats.peak_concurrency = max(stats.peak_concurrency, stats.in_flight)

    def model_call_finished(self) -> None:
        """A tracked model call has been answered."""
        with self._lock:
            self.current.in_flight -= 1

    def outcome(self, outcome: str, *, in_batch: bool = False) -> None:
        """Count the outcome of one model call (a batch request counts in `batch_requests` too)."""
        with self._lock:
            self.current.by_outcome[outcome] += 1
            if in_batch:
                self.current.batch_requests += 1

    def digest(self, identity: str | None) -> None:
        """Count a model call on the image known by this identity ('none' without an image)."""
        with self._lock:
            self.current.by_digest[identity or "none"] += 1

    def answered(self, answer: str, revision: dict[str, Any] | None, mismatch: str | None) -> None:
        """Record which recording a model call answered, its revision log entry and its mismatch note."""
        with self._lock:
            self.current.by_answer[answer] += 1
            if revision is not None:
                self.current.revisions.append(revision)
            if mismatch is not None:
                self.current.mismatches.append(mismatch)
