"""An in-memory sliding-window rate limiter, keyed by string, with an injectable clock.

Used for failed logins (per client address), registrations (per address), relay ingest
(per relay) and trackers' direct uploads (per address). Each process keeps its own
windows: behind several API replicas the effective limit is the per-process limit times
the replica count. :class:`FailureLocks` locks keys out after repeated failures (the
in-memory twin of the accounts' lock-out, for usernames that do not exist).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Protocol

from ..errors import ApiError

SWEEP_EVERY = 4_096
"""Forget idle keys after this many operations, so sprayed keys cannot grow memory forever."""


class Clock(Protocol):
    """Where time comes from (seconds); tests pass a fake one and need no sleeping."""

    def now(self) -> float:
        """The current time in seconds."""
        ...


class MonotonicClock:
    """``time.monotonic``: the default for rate limits (immune to wall-clock steps)."""

    def now(self) -> float:
        """Seconds on the monotonic clock."""
        return time.monotonic()


class RateLimiter:
    """At most ``limit`` events per key in any ``window_s``-second window (a sliding log).

    ``hit(key)`` records an event or raises 429 ``rate-limited`` with ``retry_after_s``;
    ``check(key)`` only asks, and ``record(key)`` only counts: together they limit
    *failures* (check before trying, record when the attempt failed). Thread-safe.
    """

    def __init__(
        self, limit: int, window_s: float, *, what: str = "requests", clock: Clock | None = None
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(
                f"a rate limit needs limit >= 1 and window_s > 0, not {limit}/{window_s}"
            )
        self.limit = limit
        self.window_s = window_s
        self.what = what
        """Plural noun for the message, e.g. ``"failed logins from this address"``."""
        self.clock: Clock = clock or MonotonicClock()
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._ops = 0

    def hit(self, key: str) -> None:
        """Count one event for ``key``; 429 (and nothing counted) when the window is full."""
        with self._lock:
            now = self._tick()
            events = self._window(key, now)
            if len(events) >= self.limit:
                raise self._error(events, now)
            events.append(now)

    def check(self, key: str) -> None:
        """429 when ``key``'s window is full; counts nothing."""
        with self._lock:
            now = self._tick()
            events = self._window(key, now)
            if len(events) >= self.limit:
                raise self._error(events, now)

    def record(self, key: str) -> None:
        """Count one event for ``key`` without checking (the attempt already happened)."""
        with self._lock:
            now = self._tick()
            events = self._window(key, now)
            events.append(now)
            while len(events) > self.limit:
                events.popleft()

    def remaining(self, key: str) -> int:
        """Events ``key`` may still have in the current window."""
        with self._lock:
            return max(0, self.limit - len(self._window(key, self.clock.now())))

    def reset(self, key: str) -> None:
        """Forget ``key``'s events (e.g. after a successful login)."""
        with self._lock:
            self._events.pop(key, None)

    def _window(self, key: str, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def _error(self, events: deque[float], now: float) -> ApiError:
        retry_after = max(1, math.ceil(events[0] + self.window_s - now))
        return ApiError(
            429,
            "rate-limited",
            f"too many {self.what}: at most {self.limit} in {self.window_s:g} s; "
            f"try again in {retry_after} s",
            fields={"retry_after_s": str(retry_after)},
        )

    def _tick(self) -> float:
        now = self.clock.now()
        self._ops += 1
        if self._ops >= SWEEP_EVERY:
            self._ops = 0
            horizon = now - self.window_s
            idle = [k for k, ev in self._events.items() if not ev or ev[-1] <= horizon]
            for k in idle:
                del self._events[k]
        return now


class FailureLocks:
    """Lock a key for ``lockout_ms`` after ``attempts`` failures within ``window_ms``.

    The same rule as :meth:`cloud.store.users.UserStore.record_failed_login`, in memory:
    it keeps lock-outs of unknown usernames indistinguishable from real accounts'. Times
    are the caller's (UTC ms); idle keys are forgotten so memory stays bounded. Thread-safe.
    """

    def __init__(self, attempts: int, window_ms: int, lockout_ms: int) -> None:
        self.attempts, self.window_ms, self.lockout_ms = attempts, window_ms, lockout_ms
        self._keys: dict[str, tuple[int, int, int | None]] = {}
        """key -> (failures in the window, last failure, locked until)."""
        self._lock = threading.Lock()
        self._ops = 0

    def locked_until(self, key: str, now_ms: int) -> int | None:
        """When ``key``'s lock ends, or None when it is not locked."""
        with self._lock:
            entry = self._keys.get(key)
            until = entry[2] if entry is not None else None
            return until if until is not None and until > now_ms else None

    def fail(self, key: str, now_ms: int) -> int | None:
        """Count a failure; returns the lock's end when this failure locked ``key``."""
        with self._lock:
            self._sweep(now_ms)
            count, last, until = self._keys.get(key, (0, None, None))
            count = 1 if last is None or last <= now_ms - self.window_ms else count + 1
            if count >= self.attempts:
                until = now_ms + self.lockout_ms
                self._keys[key] = (0, now_ms, until)
                return until
            self._keys[key] = (count, now_ms, until)
            return None

    def clear(self, key: str) -> None:
        """Forget ``key`` (its failures and any lock)."""
        with self._lock:
            self._keys.pop(key, None)

    def _sweep(self, now_ms: int) -> None:
        self._ops += 1
        if self._ops < SWEEP_EVERY:
            return
        self._ops = 0
        horizon = now_ms - max(self.window_ms, self.lockout_ms)
        idle = [k for k, (_, last, _) in self._keys.items() if last is None or last <= horizon]
        for k in idle:
            del self._keys[k]
