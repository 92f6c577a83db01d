"""Sets of sequence numbers kept as sorted, disjoint, inclusive ranges."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Range = tuple[int, int]
"""An inclusive range of sequence numbers, ``(first, last)``."""


class RangeSet:
    """A set of positive integers stored as merged inclusive ranges."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._ranges: list[Range] = []
        for first, last in ranges:
            self.add(first, last)

    def __iter__(self) -> Iterator[Range]:
        return iter(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._ranges == other._ranges

    def __repr__(self) -> str:
        return f"RangeSet({self._ranges!r})"

    def add(self, first: int, last: int) -> None:
        """Add ``first..last`` (inclusive), merging with touching or overlapping ranges."""
        if first > last:
            return
        kept: list[Range] = []
        for a, b in self._ranges:
            if b + 1 < first or a > last + 1:
                kept.append((a, b))
            else:
                first, last = min(a, first), max(b, last)
        kept.append((first, last))
        kept.sort()
        self._ranges = kept

    def covers(self, first: int, last: int) -> bool:
        """True when every number in ``first..last`` is in the set."""
        return any(a <= first and last <= b for a, b in self._ranges)

    def prefix_end(self) -> int:
        """The largest ``n`` such that ``1..n`` is in the set (0 when 1 is not)."""
        if self._ranges and self._ranges[0][0] <= 1:
            return self._ranges[0][1]
        return 0

    def gaps(self, first: int, last: int) -> list[Range]:
        """The ranges inside ``first..last`` that are not in the set."""
        out: list[Range] = []
        cursor = first
        for a, b in self._ranges:
            if b < cursor:
                continue
            if a > last:
                break
            if a > cursor:
                out.append((cursor, a - 1))
            cursor = max(cursor, b + 1)
        if cursor <= last:
            out.append((cursor, last))
        return out

    def to_list(self) -> list[list[int]]:
        """Plain-data form, for persisting and for the wire."""
        return [[a, b] for a, b in self._ranges]
