"""The race-wide view at one instant: statuses, the leader, gaps, groups, the leaderboard.

:func:`build_view` is a pure function of the riders' tracks and the time; the
:class:`~sync_protocol.race.scoring.RaceScorer` caches its result per (time, state version).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..frames import RaceStatus, RiderStatus
from .groups import Group, GroupRole, OnRoad, form_groups
from .rider_track import Marks, Passage, Penalty, RiderTrack
from .settings import ScoringSettings

UNCLASSIFIED = (RiderStatus.DNF, RiderStatus.DSQ, RiderStatus.DNS)
"""Out of the race, listed after everyone else in this order (as the cloud's results)."""
ON_ROAD = frozenset({RiderStatus.RACING, RiderStatus.STOPPED})
"""The statuses of riders who are grouped (a rider with no signal is not placed)."""


@dataclass(frozen=True, slots=True)
class Standing:
    """One line of the live leaderboard (officials' console, spectators' table)."""

    position: int
    """1..n: finishers by time (penalties added), then riders by progress, then DNF, DSQ,
    DNS."""
    rider_id: int
    """The rider."""
    bib: int
    """Race number."""
    name: str
    """Display name."""
    status: RiderStatus
    """Racing, finished, stopped, no signal, or out of the race."""
    progress_m: float | None
    """Race distance of the last on-course fix (None: no course or not located yet)."""
    distance_to_go_m: float | None
    """Metres to the finish line (0 past it)."""
    speed_cms: int | None
    """Speed of the last fix (None: no fix yet)."""
    lat_e7: int | None
    """Latitude of the last fix."""
    lon_e7: int | None
    """Longitude of the last fix."""
    gap_ms: int | None
    """Time behind the leader on the road at the same point of the course (finishers:
    at the finish line); penalties are not in it. None when unknown."""
    group: int | None
    """Index of the rider's group on the road (0 = front); None when not on the road."""
    group_role: GroupRole | None
    """What that group is (breakaway, peloton, ...)."""
    group_gap_ms: int | None
    """That group's time behind the front group."""
    last_fix_age_ms: int | None
    """Time since the last fix (None: no fix yet)."""
    penalty_s: int
    """Total time penalty in seconds."""
    penalties: tuple[Penalty, ...]
    """The penalties, in the order given."""
    passages: tuple[Passage, ...]
    """Checkpoint passages, by race distance."""
    finish_ms: int | None
    """When the rider crossed the finish line, UTC ms."""
    time_ms: int | None
    """Race time: finish - start + penalties (None before finishing or without a start)."""
    battery_pct: int | None = None
    """The tracker's battery level, 0..100 % (None: no device status yet, or too old)."""
    charging: bool = False
    """Whether the tracker is on external power (with a known battery level only)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One rider's passage at a checkpoint, in order of arrival."""

    order: int
    """1 for the first rider across the line."""
    rider_id: int
    """The rider."""
    bib: int
    """Race number."""
    name: str
    """Display name."""
    t_ms: int
    """Crossing time, UTC ms."""
    gap_ms: int
    """Time after the first rider across."""


def rider_status(
    track: RiderTrack,
    *,
    finish_ms: int | None,
    race_status: RaceStatus,
    start_ms: int | None,
    now_ms: int,
    settings: ScoringSettings,
) -> RiderStatus:
    """A rider's status: the officials' word, else finished, no signal, stopped, racing."""
    if track.official is not None:
        return track.official
    if finish_ms is not None:
        return RiderStatus.FINISHED
    last = track.last_t_ms
    if last is None or now_ms - last >= settings.no_signal_ms:
        return RiderStatus.NO_SIGNAL
    still = track.still_since_ms
    if race_status is not RaceStatus.SCHEDULED and still is not None:
        since = still if start_ms is None else max(still, start_ms)
        if now_ms - since >= settings.stopped_status_ms:
            return RiderStatus.STOPPED
    return RiderStatus.RACING


def _time_gap(chaser: RiderTrack, ahead: RiderTrack) -> int | None:
    """The chaser's time at their progress minus when ``ahead`` was there (>= 0)."""
    if chaser.progress_m is None or chaser.progress_t_ms is None:
        return None
    passed = ahead.log.time_at(chaser.progress_m)
    return None if passed is None else max(0, round(chaser.progress_t_ms - passed))


def _gaps(
    tracks: Sequence[RiderTrack], finish: dict[int, int | None], status: dict[int, RiderStatus]
) -> dict[int, int | None]:
    """Each rider's time behind the leader at the same point (finishers: at the line)."""
    placed = [
        t for t in tracks if status[t.rider_id] not in UNCLASSIFIED and t.progress_m is not None
    ]
    if not placed:
        return {}
    finishers = [t for t in placed if finish[t.rider_id] is not None]
    if finishers:
        leader = min(finishers, key=lambda t: (finish[t.rider_id] or 0, t.bib))
    else:
        leader = max(placed, key=lambda t: (t.progress_m or 0.0, -t.bib))
    lead_finish = finish[leader.rider_id]
    gaps: dict[int, int | None] = {}
    for track in placed:
        crossed = finish[track.rider_id]
        if track is leader:
            gaps[track.rider_id] = 0
        elif crossed is not None and lead_finish is not None:
            gaps[track.rider_id] = crossed - lead_finish
        else:
            gaps[track.rider_id] = _time_gap(track, leader)
    return gaps


def _groups(
    tracks: Sequence[RiderTrack],
    status: dict[int, RiderStatus],
    gaps: dict[int, int | None],
    settings: ScoringSettings,
) -> list[Group]:
    road = sorted(
        (t for t in tracks if status[t.rider_id] in ON_ROAD and t.progress_m is not None),
        key=lambda t: (-(t.progress_m or 0.0), t.bib),
    )
    riders = []
    for i, track in enumerate(road):
        gap, ahead_gap = gaps.get(track.rider_id), None
        if i:
            ahead = road[i - 1]
            ahead_gap = _time_gap(track, ahead)
            before = gaps.get(ahead.rider_id)
            if ahead_gap is None and gap is not None and before is not None:
                ahead_gap = max(0, gap - before)
        riders.append(OnRoad(track.rider_id, track.bib, track.progress_m or 0.0, gap, ahead_gap))
    return form_groups(
        riders,
        group_gap_ms=settings.group_gap_ms,
        peloton_min_riders=settings.peloton_min_riders,
    )


def build_view(
    tracks: Sequence[RiderTrack],
    *,
    marks: Marks | None,
    race_status: RaceStatus,
    start_ms: int | None,
    now_ms: int,
    settings: ScoringSettings,
) -> tuple[list[Standing], list[Group]]:
    """The leaderboard (position order) and the groups on the road at ``now_ms``."""
    finish = {t.rider_id: t.finish_ms(marks) for t in tracks}
    status = {
        t.rider_id: rider_status(
            t,
            finish_ms=finish[t.rider_id],
            race_status=race_status,
            start_ms=start_ms,
            now_ms=now_ms,
            settings=settings,
        )
        for t in tracks
    }
    gaps = _gaps(tracks, finish, status) if marks is not None else {}
    groups = _groups(tracks, status, gaps, settings) if marks is not None else []
    group_of = {rider_id: g for g in groups for rider_id in g.rider_ids}
    order = {m.key: i for i, m in enumerate(marks.marks)} if marks is not None else {}
    finish_m = marks.finish.distance_m if marks is not None else None

    def rank(t: RiderTrack) -> tuple[int, float, int]:
        st, crossed = status[t.rider_id], finish[t.rider_id]
        behind = math.inf if t.progress_m is None else -t.progress_m
        if st is RiderStatus.FINISHED and crossed is not None:
            return (0, crossed + t.penalty_s * 1000, t.bib)
        if st in UNCLASSIFIED:
            return (2 + UNCLASSIFIED.index(st), behind, t.bib)
        return (1, behind, t.bib)

    standings = []
    for position, t in enumerate(sorted(tracks, key=rank), start=1):
        group, crossed = group_of.get(t.rider_id), finish[t.rider_id]
        seen = t.last_t_ms is not None
        to_go = None
        if finish_m is not None and t.progress_m is not None:
            to_go = max(0.0, finish_m - t.progress_m)
        time_ms = None
        if crossed is not None and start_ms is not None:
            time_ms = crossed - start_ms + t.penalty_s * 1000
        battery, charging = t.battery_at(now_ms)
        standings.append(
            Standing(
                position=position,
                rider_id=t.rider_id,
                bib=t.bib,
                name=t.name,
                status=status[t.rider_id],
                progress_m=t.progress_m,
                distance_to_go_m=to_go,
                speed_cms=t.speed_cms if seen else None,
                lat_e7=t.lat_e7 if seen else None,
                lon_e7=t.lon_e7 if seen else None,
                gap_ms=gaps.get(t.rider_id),
                group=None if group is None else group.index,
                group_role=None if group is None else group.role,
                group_gap_ms=None if group is None else group.gap_ms,
                last_fix_age_ms=None if t.last_t_ms is None else max(0, now_ms - t.last_t_ms),
                penalty_s=t.penalty_s,
                penalties=tuple(t.penalties),
                passages=tuple(
                    sorted(t.passages.values(), key=lambda p: order[p.checkpoint, p.top])
                ),
                finish_ms=crossed,
                time_ms=time_ms,
                battery_pct=battery,
                charging=charging,
            )
        )
    return standings, groups
