"""What every source shares: counters, closing, strictly increasing times, replay pacing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Coroutine
from typing import Any, TypeVar

from .clock import Clock
from .reading import InvalidReadingError, Quality, Reading, SourceError, SourceStats

T = TypeVar("T")


class Closed(Exception):
    """Raised inside a source's loop when :meth:`SourceBase.close` interrupts a wait."""


class SourceBase:
    """Counters, a close that interrupts any wait, and the strictly-increasing-time rule."""

    def __init__(self, spec: str, clock: Clock) -> None:
        self._spec = spec
        self._clock = clock
        self._stats = SourceStats()
        self._closed = False
        self._close_event: asyncio.Event | None = None
        self._started = False
        self._last_t_ms: int | None = None

    @property
    def spec(self) -> str:
        """The SOURCE spec this source was opened from."""
        return self._spec

    @property
    def stats(self) -> SourceStats:
        """The counters right now (an immutable snapshot)."""
        return self._stats

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop: a pending ``readings()`` ends promptly. Idempotent."""
        self._closed = True
        if self._close_event is not None:
            self._close_event.set()
        self._on_close()

    def _on_close(self) -> None:
        """Release what the source holds (a socket, a file); called by :meth:`close`."""

    def _start(self) -> None:
        if self._started:
            raise SourceError(f"{self._spec}: readings() can be iterated only once")
        self._started = True

    def _update(self, **changes: Any) -> None:
        self._stats = dataclasses.replace(self._stats, **changes)

    def _count(self, counter: str) -> None:
        self._update(**{counter: getattr(self._stats, counter) + 1})

    def _no_fix(self) -> None:
        self._update(no_fix=self._stats.no_fix + 1, quality=Quality.NO_FIX)

    def _reading(self, **fields: Any) -> Reading | None:
        """A reading made from ``fields``, or None (counted) when it cannot be a valid fix
        or does not come after the previous one."""
        try:
            reading = Reading(**fields)
        except InvalidReadingError:
            self._count("invalid")
            return None
        if self._last_t_ms is not None and reading.t_ms <= self._last_t_ms:
            self._count("repeated")
            return None
        self._last_t_ms = reading.t_ms
        self._update(readings=self._stats.readings + 1, quality=reading.quality)
        return reading

    async def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` unless the source is closed first (then raise :class:`Closed`)."""
        if self._closed:
            coroutine.close()
            raise Closed
        if self._close_event is None:
            self._close_event = asyncio.Event()
        work = asyncio.ensure_future(coroutine)
        closing = asyncio.ensure_future(self._close_event.wait())
        try:
            await asyncio.wait((work, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            raise Closed
        return work.result()

    async def _sleep_until(self, t_ms: int) -> None:
        await self._wait(self._clock.sleep_until(t_ms))


class Pacer:
    """Times a replay: when to emit each recorded time, and which time to stamp it with.

    The first record is emitted at once, stamped with the clock's time at the start; later
    ones follow at their recorded intervals divided by ``speed``. Stamps keep the recorded
    intervals (a ride replayed ten times faster still rides at its own speed, so every hop's
    plausibility checks hold), or the recorded times themselves with ``keep_times``.
    """

    def __init__(self, clock: Clock, *, speed: float, keep_times: bool) -> None:
        self._clock = clock
        self._speed = speed
        self._keep_times = keep_times
        self._origin: tuple[int, int] | None = None

    def due_ms(self, recorded_ms: int) -> int:
        """Clock time at which the record of ``recorded_ms`` is due."""
        first, start = self._anchor(recorded_ms)
        return start + round((recorded_ms - first) / self._speed)

    def stamp(self, recorded_ms: int) -> int:
        """The time to give the reading recorded at ``recorded_ms``."""
        first, start = self._anchor(recorded_ms)
        return recorded_ms if self._keep_times else start + recorded_ms - first

    def _anchor(self, recorded_ms: int) -> tuple[int, int]:
        if self._origin is None:
            self._origin = (recorded_ms, self._clock.now_ms())
        return self._origin
