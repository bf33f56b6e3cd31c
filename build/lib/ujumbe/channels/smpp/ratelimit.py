"""Rate limits for SMPP binds: a token bucket, and a pacer that backs off on throttling.

The server side uses ``TokenBucket.try_take`` (answer ESME_RTHROTTLED rather
than queue); the client side uses ``AdaptivePacer`` (wait for a token, halve
the rate when the SMSC says it is throttling us, creep back up afterwards).
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` saved. ``take`` reserves: each
    waiter sleeps for its own deficit, so waiters are served in arrival order
    without a queue of their own."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = float(rate)
        # 50 ms worth of burst: smooth enough for SMSCs that count per second.
        self.burst = burst if burst is not None else max(1.0, self.rate / 20)
        self._tokens = self.burst
        self._last = time.monotonic()

    def _refill(self) -> float:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def take(self) -> None:
        self._refill()
        self._tokens -= 1.0
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)

    def set_rate(self, rate: float) -> None:
        self._refill()
        self.rate = float(rate)
        self.burst = max(1.0, self.rate / 20)
        # Drop reservations made at the old rate so a cut takes effect at once
        # for new callers (those already sleeping keep their slot).
        self._tokens = min(max(self._tokens, -self.burst), self.burst)


class AdaptivePacer:
    """Client-side pacing for one bind.

    ``tps`` is the configured cap (None: unlimited). ``throttled()`` at least
    halves the current rate, and goes straight down to the rate the SMSC has
    actually been accepting when that is lower (so a 40/s SMSC is found in one
    step, not seven halvings); it acts at most once per ``cooldown_s``, since a
    full window of throttled responses is one signal, not 64. Every ``recover_s`` without throttling the
    rate grows by ``recover_factor`` until it is back at the cap (or, uncapped,
    back above the rate at which throttling began, when the cap is lifted).
    """

    def __init__(
        self,
        tps: float | None,
        *,
        min_rate: float = 1.0,
        cooldown_s: float = 1.0,
        recover_s: float = 1.0,
        recover_factor: float = 1.25,
    ) -> None:
        self.base = tps
        self.min_rate = min_rate
        self.cooldown_s = cooldown_s
        self.recover_s = recover_s
        self.recover_factor = recover_factor
        self.rate: float | None = tps
        self._bucket = TokenBucket(tps) if tps else None
        self._resume_unlimited_at = 0.0
        self._last_change = 0.0
        self._win_start = time.monotonic()
        self._win_count = 0
        self.measured = 0.0
        self.throttle_events = 0
        self._ok_start = self._win_start
        self._ok_count = 0
        self._ok_prev = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        self._win_count += 1
        elapsed = now - self._win_start
        if elapsed >= 0.5:
            self.measured = self._win_count / elapsed
            self._win_start = now
            self._win_count = 0
        if self.rate is not None and self.rate != self.base and now - self._last_change >= self.recover_s:
            self._set(self.rate * self.recover_factor, now)

    def _set(self, rate: float, now: float) -> None:
        self._last_change = now
        if self.base is not None and rate >= self.base:
            rate = self.base
        elif self.base is None and rate >= self._resume_unlimited_at:
            self.rate = None
            self._bucket = None
            return
        rate = max(self.min_rate, rate)
        self.rate = rate
        if self._bucket is None:
            self._bucket = TokenBucket(rate)
        else:
            self._bucket.set_rate(rate)

    async def acquire(self) -> None:
        self._tick()
        if self._bucket is not None:
            await self._bucket.take()

    def accepted(self) -> None:
        """Count one submit the SMSC took; the basis for the cut on throttling."""
        self._ok_count += 1
        now = time.monotonic()
        if now - self._ok_start >= 1.0:
            self._ok_prev = self._ok_count / (now - self._ok_start)
            self._ok_start = now
            self._ok_count = 0

    def _accepted_rate(self, now: float) -> float:
        elapsed = now - self._ok_start
        if elapsed >= 0.25 or not self._ok_prev:
            return self._ok_count / max(elapsed, 0.05)
        return self._ok_prev

    def _offered_rate(self, now: float) -> float:
        elapsed = now - self._win_start
        if elapsed >= 0.1 or not self.measured:
            return self._win_count / max(elapsed, 0.01)
        return self.measured

    def throttled(self) -> None:
        now = time.monotonic()
        self.throttle_events += 1
        if now - self._last_change < self.cooldown_s and self.rate is not None and self.rate != self.base:
            return
        current = self.rate if self.rate is not None else max(self._offered_rate(now), self.min_rate * 2)
        if self.base is None:
            self._resume_unlimited_at = max(current, self.min_rate * 4)
        self._set(min(current / 2, max(self._accepted_rate(now), self.min_rate)), now)
