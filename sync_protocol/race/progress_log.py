"""One rider's progress history: when they first reached each race distance, bounded.

Gaps between riders are "time at the same point of the course": when the leader passed
the point where the chaser is now. A :class:`ProgressLog` answers that from samples of
(progress_m, t_ms), sorted by time with progress never decreasing, so
:meth:`ProgressLog.time_at` is a binary search and a linear interpolation.

Memory is bounded whatever the race: samples closer than ``spacing_m`` (and less than
``max_interval_ms`` apart) replace each other, standing still adds nothing (the first
time at a distance is what counts), and past ``cap`` samples the older half is thinned by
two, so old parts of the race get coarser while the recent part stays fine.

Each sample also remembers whether the interval ending at it is *broken*: the rider went
off course (or was not seen on course) somewhere in it. Checkpoint passages are never
interpolated across a broken interval.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import NamedTuple

from ..errors import LocalProtocolError

Sample = tuple[float, int]
"""(progress_m, t_ms)."""


class Slot(NamedTuple):
    """Where a late sample went: its neighbours and its progress clamped between them."""

    before: Sample | None
    """The sample before it (None: it is the oldest)."""
    after: Sample
    """The sample after it."""
    continuous: bool
    """Whether the interval between the neighbours is unbroken (on course throughout)."""
    progress_m: float
    """Its progress, clamped between the neighbours' (progress never decreases)."""


class ProgressLog:
    """(progress_m, t_ms) samples of one rider, sorted by time, progress non-decreasing."""

    __slots__ = ("_brk", "_cap", "_max_interval_ms", "_p", "_spacing_m", "_t")

    def __init__(self, *, spacing_m: float, max_interval_ms: int, cap: int) -> None:
        self._p = array("d")
        self._t = array("q")
        self._brk = array("b")
        self._spacing_m = spacing_m
        self._max_interval_ms = max_interval_ms
        self._cap = cap

    def __len__(self) -> int:
        return len(self._t)

    def samples(self) -> list[Sample]:
        """Every sample, oldest first (for tests and diagnostics)."""
        return list(zip(self._p, self._t, strict=True))

    def last(self) -> Sample | None:
        """The newest sample."""
        return (self._p[-1], self._t[-1]) if self._t else None

    def append(self, progress_m: float, t_ms: int, *, broken: bool = False) -> None:
        """Add the newest on-course fix; ``broken``: the rider was off course since the last.

        Progress below the last sample's is raised to it (progress never decreases).
        """
        n = len(self._t)
        if n and t_ms <= self._t[-1]:
            raise LocalProtocolError(
                f"progress log: t_ms {t_ms} is not after the last sample {self._t[-1]}"
            )
        if n:
            progress_m = max(progress_m, self._p[-1])
            if progress_m == self._p[-1] and not broken:
                return  # standing still: the first time at this distance is kept
        if (
            n >= 2
            and not broken
            and not self._brk[-1]
            and progress_m - self._p[-2] <= self._spacing_m
            and t_ms - self._t[-2] <= self._max_interval_ms
        ):
            self._p[-1], self._t[-1] = progress_m, t_ms  # the head was an in-between sample
            return
        self._p.append(progress_m)
        self._t.append(t_ms)
        self._brk.append(1 if broken else 0)
        if len(self._t) > self._cap:
            self._thin()

    def around(self, t_ms: int) -> tuple[Sample | None, Sample | None]:
        """The samples just before and just after (or at) ``t_ms``."""
        k = bisect_left(self._t, t_ms)
        before = (self._p[k - 1], self._t[k - 1]) if k else None
        after = (self._p[k], self._t[k]) if k < len(self._t) else None
        return before, after

    def insert(self, progress_m: float, t_ms: int) -> Slot | None:
        """Add a late on-course fix older than the newest sample (kept if it adds detail).

        Returns where it went (:class:`Slot`); None when the fix is not older than the
        newest sample or repeats a sample's time.
        """
        k = bisect_left(self._t, t_ms)
        if k == len(self._t) or self._t[k] == t_ms:
            return None
        after: Sample = (self._p[k], self._t[k])
        before: Sample | None = (self._p[k - 1], self._t[k - 1]) if k else None
        continuous = not self._brk[k]
        low = before[0] if before is not None else -float("inf")
        progress_m = min(max(progress_m, low), after[0])
        coarse = before is None or (
            after[0] - before[0] > self._spacing_m or after[1] - before[1] > self._max_interval_ms
        )
        if coarse and (before is None or progress_m > before[0]):
            self._p.insert(k, progress_m)
            self._t.insert(k, t_ms)
            self._brk.insert(k, self._brk[k])  # the halves of a broken interval stay broken
            if len(self._t) > self._cap:
                self._thin()
        return Slot(before, after, continuous, progress_m)

    def time_at(self, progress_m: float) -> float | None:
        """When the rider first reached ``progress_m`` (ms, interpolated); None outside."""
        p = self._p
        i = bisect_left(p, progress_m)
        if i == len(p):
            return None
        if p[i] == progress_m:
            return float(self._t[i])
        if i == 0:
            return None
        p0, p1, t0, t1 = p[i - 1], p[i], self._t[i - 1], self._t[i]
        return t0 + (t1 - t0) * (progress_m - p0) / (p1 - p0)

    def _thin(self) -> None:
        """Drop every other sample of the older half (merging their broken flags)."""
        half = len(self._t) // 2
        keep_p, keep_t, keep_b = array("d"), array("q"), array("b")
        pending = 0
        for i in range(len(self._t)):
            if 0 < i < half and i % 2 == 1:
                pending |= self._brk[i]  # dropped: its interval joins the next one
                continue
            keep_p.append(self._p[i])
            keep_t.append(self._t[i])
            keep_b.append(self._brk[i] | pending)
            pending = 0
        self._p, self._t, self._brk = keep_p, keep_t, keep_b
