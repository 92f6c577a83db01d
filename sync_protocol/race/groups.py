"""Groups on the road: riders close together in time form a group, named the cycling way.

Pure functions over riders in road order (furthest along first). Two consecutive riders
are in the same group when the time gap between them, at the same point of the course,
is under a threshold (3 s by default, the usual timing rule). The largest group with
enough riders is the **peloton**; the front group is the **breakaway** when a peloton
rides behind it (otherwise the **head of race**); groups between them are **chase**
groups; behind the peloton come further **groups** and lone **stragglers**.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class GroupRole(StrEnum):
    """What a group is in the race."""

    HEAD_OF_RACE = "head of race"
    """The front group when no peloton rides behind it (it is not a breakaway)."""
    BREAKAWAY = "breakaway"
    """The front group, ahead of the peloton."""
    CHASE = "chase"
    """A group between the breakaway and the peloton."""
    PELOTON = "peloton"
    """The largest group (with at least the configured number of riders)."""
    GROUP = "group"
    """A group of two or more behind the peloton (or behind the head without one)."""
    STRAGGLER = "straggler"
    """A lone rider behind the peloton (or behind the head without one)."""


@dataclass(frozen=True, slots=True)
class OnRoad:
    """A rider on the road, as grouping needs them."""

    rider_id: int
    """The rider."""
    bib: int
    """Their race number."""
    progress_m: float
    """Race distance."""
    gap_ms: int | None
    """Time behind the leader at the same point (None: unknown)."""
    gap_ahead_ms: int | None
    """Time behind the rider just ahead on the road at the same point (None: unknown, or
    the first rider)."""


@dataclass(frozen=True, slots=True)
class Group:
    """Riders together on the road."""

    index: int
    """0 for the front group, counting back."""
    role: GroupRole
    """Breakaway, peloton, chase, ..."""
    rider_ids: tuple[int, ...]
    """Its riders, front first."""
    bibs: tuple[int, ...]
    """Their race numbers, in the same order."""
    progress_m: float
    """Race distance of its front rider."""
    gap_ms: int | None
    """Time behind the front group at the same point of the course (0 for the front
    group; None when unknown)."""

    @property
    def size(self) -> int:
        """Number of riders."""
        return len(self.rider_ids)


def form_groups(
    riders: Sequence[OnRoad], *, group_gap_ms: int, peloton_min_riders: int
) -> list[Group]:
    """Split ``riders`` (road order, front first) into groups and name them.

    A new group starts wherever the gap to the rider ahead is unknown or at least
    ``group_gap_ms``.
    """
    runs: list[list[OnRoad]] = []
    for i, rider in enumerate(riders):
        gap = rider.gap_ahead_ms
        if i == 0 or gap is None or gap >= group_gap_ms:
            runs.append([rider])
        else:
            runs[-1].append(rider)
    if not runs:
        return []
    biggest = max(range(len(runs)), key=lambda i: (len(runs[i]), -i))
    peloton = biggest if len(runs[biggest]) >= peloton_min_riders else None
    head_gap = runs[0][0].gap_ms
    groups = []
    for i, run in enumerate(runs):
        front = run[0]
        gap = None
        if i == 0:
            gap = 0
        elif front.gap_ms is not None and head_gap is not None:
            gap = max(0, front.gap_ms - head_gap)
        groups.append(
            Group(
                index=i,
                role=_role(i, len(run), peloton),
                rider_ids=tuple(r.rider_id for r in run),
                bibs=tuple(r.bib for r in run),
                progress_m=front.progress_m,
                gap_ms=gap,
            )
        )
    return groups


def _role(index: int, size: int, peloton: int | None) -> GroupRole:
    if index == peloton:
        return GroupRole.PELOTON
    if index == 0:
        return GroupRole.HEAD_OF_RACE if peloton is None else GroupRole.BREAKAWAY
    if peloton is not None and index < peloton:
        return GroupRole.CHASE
    return GroupRole.GROUP if size >= 2 else GroupRole.STRAGGLER
