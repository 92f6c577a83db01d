"""Clocks: the real one, and a manual one that tests (and simulated outages) drive."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time, injected wherever a source paces a replay or waits to retry."""

    def now_ms(self) -> int:
        """UTC now, milliseconds since the Unix epoch."""
        ...

    async def sleep_until(self, t_ms: int) -> None:
        """Return once :meth:`now_ms` is at least ``t_ms`` (at once if it already is)."""
        ...


class SystemClock:
    """The machine's clock. Sleeps are re-checked against it, so a clock step is followed."""

    def now_ms(self) -> int:
        """UTC now, milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000

    async def sleep_until(self, t_ms: int) -> None:
        """Sleep until the wall clock reads ``t_ms``."""
        while (left_ms := t_ms - self.now_ms()) > 0:
            await asyncio.sleep(left_ms / 1000)


class ManualClock:
    """A virtual clock whose time moves only when told to, so hours pass in an instant.

    - :meth:`advance` and :meth:`set` move time forward and wake every sleeper whose time
      has come, earliest first.
    - With ``autojump=True`` a sleeper moves the clock itself: ``sleep_until(t)`` jumps the
      clock to ``t`` (waking anyone due before it) and returns. A replay or simulation
      driven by such a clock runs as fast as the event loop allows, with the same times it
      would have at real speed.
    - :meth:`sleepers` waits until tasks are asleep on the clock, so a test can advance it
      exactly when the code under test is waiting, with no real-time sleep.
    """

    def __init__(self, start_ms: int, *, autojump: bool = False) -> None:
        if type(start_ms) is not int:
            raise TypeError(f"ManualClock start_ms must be an integer, not {start_ms!r}")
        self._now = start_ms
        self._autojump = autojump
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed: asyncio.Event | None = None

    @property
    def autojump(self) -> bool:
        """True when a sleep jumps the clock to its deadline."""
        return self._autojump

    @property
    def pending(self) -> int:
        """Tasks asleep on the clock right now."""
        return sum(1 for _, _, future in self._heap if not future.done())

    def now_ms(self) -> int:
        """The virtual time, milliseconds since the Unix epoch."""
        return self._now

    async def sleep_until(self, t_ms: int) -> None:
        """Wait until the clock reads ``t_ms`` (jumping to it with ``autojump``)."""
        if t_ms <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (t_ms, next(self._order), future))
        self._notify()
        if self._autojump:
            self.set(t_ms)
        await future

    def advance(self, ms: int) -> None:
        """Move the clock ``ms`` milliseconds forward, waking whoever is due."""
        if ms < 0:
            raise ValueError(f"a clock cannot go back ({ms} ms)")
        self.set(self._now + ms)

    def set(self, t_ms: int) -> None:
        """Move the clock forward to ``t_ms``, waking whoever is due, earliest first."""
        if t_ms < self._now:
            raise ValueError(f"a clock cannot go back (from {self._now} to {t_ms})")
        self._now = t_ms
        while self._heap and self._heap[0][0] <= t_ms:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)

    async def sleepers(self, count: int = 1) -> None:
        """Return once at least ``count`` tasks are asleep on the clock."""
        while self.pending < count:
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
