"""A sliding-window request limiter (async), and the peak count of a window for checking one afterwards."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable

from poemlib.gemini.settings import GeminiSettings


class RateLimiter:
    """Sliding window: at most `limit` acquisitions in any `window_s` + `margin_s` seconds.

    The margin absorbs the delay between taking a slot and the request reaching the server (SDK serialisation,
    connection set-up, a busy event loop), so that the *server* never counts more than `limit` in `window_s`.
    """

    def __init__(self, limit: int | None, window_s: float = 60.0, *, margin_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.margin_s = min(0.25, 0.05 * window_s) if margin_s is None else margin_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock: asyncio.Lock | None = None
        self.waited_s = 0.0

    @classmethod
    def from_settings(cls, settings: GeminiSettings) -> RateLimiter:
        """The limiter for `settings.rpm` per `rate_window_s` (no limit when rpm is None)."""
        return cls(settings.rpm, settings.rate_window_s, margin_s=settings.rate_margin_s)

    async def acquire(self) -> None:
        """Wait until one more request fits in the window, then take it."""
        if not self.limit:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            span = self.window_s + self.margin_s
            while True:
                now = self._clock()
                while self._times and now - self._times[0] >= span:
                    self._times.popleft()
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return
                wait = self._times[0] + span - now
                self.waited_s += wait
                await asyncio.sleep(wait)


def peak_in_window(times: Iterable[float], window_s: float = 60.0) -> int:
    """Most events in any half-open window [t, t + window_s)."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
