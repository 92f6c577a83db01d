"""The relay's live race model: fixes and officials' actions in, frames and standings out.

Sans-IO in the manner of ``aioquic``'s ``QuicConnection``: a :class:`RaceScorer` per race
is fed positions (:meth:`~RaceScorer.on_fix`, from the relay's own trackers or the cloud's
live stream), the trackers' battery levels (:meth:`~RaceScorer.on_status`) and race
control (:meth:`~RaceScorer.on_action`, :meth:`~RaceScorer.on_race_state`), and asked,
with the time as an argument, for the spectators'
:class:`~sync_protocol.frames.LiveFrame` (:meth:`~RaceScorer.frame`), the officials'
standings, groups and alerts. It never reads a clock, opens a socket or logs.

Gaps are time at the same point of the course: the chaser's time at their progress minus
the time the leader was there (interpolated in the leader's
:class:`~sync_protocol.race.progress_log.ProgressLog`). See ``docs/live-frames.md``, "Live
scoring on the relay".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..course import Course
from ..errors import LocalProtocolError
from ..frames import (
    BATTERY_PCT_MAX,
    BIB_MAX,
    FIX_AGE_S_MAX,
    GAP_DS_MAX,
    GROUP_MAX,
    LAT_E7_MAX,
    LON_E7_MAX,
    MAX_RIDERS,
    PENALTY_S_MAX,
    PROGRESS_M_MAX,
    SPEED_CMS_MAX,
    T_MS_MAX,
    U32_MAX,
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
)
from .alerts import Alert, AlertKind, rider_alerts
from .groups import Group, GroupRole
from .rider_track import FixOutcome, Marks, Passage, Penalty, RiderTrack
from .settings import ScoringSettings
from .standings import Arrival, Standing, build_view

__all__ = [
    "RACE_COMMANDS",
    "RACE_STATES",
    "RIDER_ACTIONS",
    "TRANSITIONS",
    "Alert",
    "AlertKind",
    "Arrival",
    "FixOutcome",
    "Group",
    "GroupRole",
    "Passage",
    "Penalty",
    "RaceScorer",
    "ScoringSettings",
    "Standing",
]

RACE_STATES: dict[str, RaceStatus] = {
    "scheduled": RaceStatus.SCHEDULED,
    "live": RaceStatus.LIVE,
    "neutralised": RaceStatus.NEUTRALISED,
    "finished": RaceStatus.FINISHED,
    "published": RaceStatus.RESULTS_PUBLISHED,
}
"""The cloud's race states (``cloud/store/races.py``) and their frame status."""
TRANSITIONS: dict[RaceStatus, tuple[RaceStatus, ...]] = {
    RaceStatus.SCHEDULED: (RaceStatus.LIVE,),
    RaceStatus.LIVE: (RaceStatus.NEUTRALISED, RaceStatus.FINISHED),
    RaceStatus.NEUTRALISED: (RaceStatus.LIVE, RaceStatus.FINISHED),
    RaceStatus.FINISHED: (RaceStatus.RESULTS_PUBLISHED,),
    RaceStatus.RESULTS_PUBLISHED: (),
}
"""The race state machine, as the cloud's: which status may follow which."""
RACE_COMMANDS: dict[str, RaceStatus] = {
    "start": RaceStatus.LIVE,
    "neutralise": RaceStatus.NEUTRALISED,
    "resume": RaceStatus.LIVE,
    "finish": RaceStatus.FINISHED,
    "publish": RaceStatus.RESULTS_PUBLISHED,
}
"""Race control's commands and the status each leads to."""
RIDER_ACTIONS: dict[str, RiderStatus | None] = {
    "penalty": None,
    "dnf": RiderStatus.DNF,
    "dns": RiderStatus.DNS,
    "dsq": RiderStatus.DSQ,
    "reinstate": None,
}
"""Officials' actions on a rider (``cloud/control.py`` KINDS) and the status each sets."""


def _reachable(status: RaceStatus) -> frozenset[RaceStatus]:
    seen, todo = set(), [status]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


_REACHABLE = {status: _reachable(status) for status in RaceStatus}


def _fail(message: str, reason: str) -> LocalProtocolError:
    return LocalProtocolError(message, reason=reason)


def _int(name: str, value: object, low: int, high: int, reason: str, who: object = None) -> int:
    if type(value) is not int or not low <= value <= high:
        where = "" if who is None else f"rider {who}: "
        raise _fail(f"{where}{name} must be an integer in {low}..{high}, got {value!r}", reason)
    return value


def _clamp(value: int, low: int, high: int) -> int:
    return low if value < low else high if value > high else value


class RaceScorer:
    """The live model of one race; every method is given the time, none reads a clock."""

    def __init__(
        self,
        race_id: int,
        course: Course | None,
        start_list: Mapping[int, tuple[int, str]],
        *,
        state: str | RaceStatus = "scheduled",
        start_ms: int | None = None,
        settings: ScoringSettings | None = None,
    ) -> None:
        self.race_id = _int("race_id", race_id, 0, U32_MAX, "bad-race")
        self.settings = settings if settings is not None else ScoringSettings()
        self.race_status = self._status_of(state)
        self.start_ms = (
            None if start_ms is None else _int("start_ms", start_ms, 0, T_MS_MAX, "bad-race")
        )
        self.course: Course | None = None
        self._marks: Marks | None = None
        self._riders: dict[int, RiderTrack] = {}
        self._bibs: set[int] = set()
        self._action_ids: set[str] = set()
        self._tick = 0
        self._version = 0
        self._cache: tuple[int, int, list[Standing], list[Group]] | None = None
        for rider_id, entry in start_list.items():
            if not isinstance(entry, tuple) or len(entry) != 2:
                message = f"start list: rider {rider_id} must map to (bib, name), got {entry!r}"
                raise _fail(message, "bad-rider")
            self.add_rider(rider_id, *entry)
        self.set_course(course)

    # -- inputs ------------------------------------------------------------------------

    def add_rider(self, rider_id: int, bib: int, name: str) -> None:
        """Put a rider on the start list (a late registration)."""
        _int("rider_id", rider_id, 0, 2**63 - 1, "bad-rider")
        _int("bib", bib, 1, BIB_MAX, "bad-rider", rider_id)
        if not isinstance(name, str):
            raise _fail(f"rider {rider_id}: name must be a string, got {name!r}", "bad-rider")
        if rider_id in self._riders:
            raise _fail(f"rider {rider_id} is already on the start list", "bad-rider")
        if bib in self._bibs:
            raise _fail(f"bib {bib} is already taken in race {self.race_id}", "bad-rider")
        if len(self._riders) >= MAX_RIDERS:
            raise _fail(f"a race has at most {MAX_RIDERS} riders", "bad-rider")
        self._riders[rider_id] = RiderTrack(rider_id, bib, name, self.settings)
        self._bibs.add(bib)
        self._version += 1

    def set_course(self, course: Course | None) -> None:
        """Set (or replace) the course: progress and passages start again from the last fixes."""
        if course is not None and not isinstance(course, Course):
            raise _fail(f"course must be a Course or None, got {course!r}", "bad-race")
        self.course = course
        self._marks = None if course is None else Marks.of(course)
        for track in self._riders.values():
            track.relocate(course, self._marks)
        self._version += 1

    def on_fix(
        self,
        rider_id: int,
        t_ms: int,
        lat_e7: int,
        lon_e7: int,
        ele_dm: int = 0,
        speed_cms: int = 0,
        progress_m: float | None = None,
    ) -> FixOutcome:
        """A verified fix of a rider; ``progress_m`` when the sender already projected it.

        Only a fix newer than the rider's last moves them; an older one (backfill after an
        outage) refines their history and may time a checkpoint it is first to bracket.
        """
        track = self._riders.get(rider_id)
        if track is None:
            raise _fail(
                f"rider {rider_id} is not on the start list of race {self.race_id}",
                "unknown-rider",
            )
        _int("t_ms", t_ms, 0, T_MS_MAX, "bad-fix", rider_id)
        _int("lat_e7", lat_e7, -LAT_E7_MAX, LAT_E7_MAX, "bad-fix", rider_id)
        _int("lon_e7", lon_e7, -LON_E7_MAX, LON_E7_MAX, "bad-fix", rider_id)
        _int("ele_dm", ele_dm, -(2**31), 2**31 - 1, "bad-fix", rider_id)
        _int("speed_cms", speed_cms, 0, 2**31 - 1, "bad-fix", rider_id)
        if progress_m is not None and (
            isinstance(progress_m, bool)
            or not isinstance(progress_m, int | float)
            or not math.isfinite(progress_m)
        ):
            message = f"rider {rider_id}: progress_m must be a finite number, got {progress_m!r}"
            raise _fail(message, "bad-fix")
        outcome = track.on_fix(
            self.course, self._marks, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, progress_m
        )
        if outcome is not FixOutcome.DUPLICATE:
            self._version += 1
        return outcome

    def on_status(self, rider_id: int, t_ms: int, battery_pct: int, charging: bool) -> bool:
        """A verified device status of a rider's tracker; True when it is their newest.

        An older (or equally old) status than the rider's last changes nothing.
        """
        track = self._riders.get(rider_id)
        if track is None:
            raise _fail(
                f"rider {rider_id} is not on the start list of race {self.race_id}",
                "unknown-rider",
            )
        _int("status t_ms", t_ms, 0, T_MS_MAX, "bad-status", rider_id)
        _int("battery_pct", battery_pct, 0, BATTERY_PCT_MAX, "bad-status", rider_id)
        if not isinstance(charging, bool):
            message = f"rider {rider_id}: charging must be a bool, got {charging!r}"
            raise _fail(message, "bad-status")
        changed = track.on_status(t_ms, battery_pct, charging)
        if changed:
            self._version += 1
        return changed

    def on_action(
        self,
        kind: str,
        *,
        t_ms: int,
        rider_id: int | None = None,
        seconds: int = 0,
        reason: str = "",
        action_id: str | None = None,
    ) -> bool:
        """An official action; returns whether it changed anything.

        Rider actions (:data:`RIDER_ACTIONS`, as the cloud records them): ``penalty``
        (``seconds``, negative to correct one), ``dnf``, ``dns``, ``dsq``, ``reinstate``.
        Race commands (:data:`RACE_COMMANDS`): ``start``, ``neutralise``, ``resume``,
        ``finish``, ``publish``, with no rider. An ``action_id`` already applied is a replay
        (the cloud re-sends every action when a subscriber resyncs): it counts once.
        """
        if action_id is not None and action_id in self._action_ids:
            return False
        _int("action t_ms", t_ms, 0, T_MS_MAX, "bad-action")
        if kind in RACE_COMMANDS:
            if rider_id is not None:
                raise _fail(f"race command {kind!r} takes no rider", "bad-action")
            changed = self.on_race_state(RACE_COMMANDS[kind], t_ms=t_ms)
        elif kind in RIDER_ACTIONS:
            track = self._riders.get(rider_id) if rider_id is not None else None
            if track is None:
                raise _fail(f"{kind}: rider {rider_id} is not in race {self.race_id}", "bad-action")
            if kind == "penalty":
                _int("penalty seconds", seconds, -3_600, 3_600, "bad-action")
                if seconds == 0 or not isinstance(reason, str):
                    raise _fail("a penalty needs non-zero seconds and a reason", "bad-action")
                track.penalties.append(Penalty(seconds, reason, t_ms, action_id))
                changed = True
            else:
                changed = track.official is not RIDER_ACTIONS[kind]
                track.official = RIDER_ACTIONS[kind]
        else:
            known = ", ".join([*RIDER_ACTIONS, *RACE_COMMANDS])
            raise _fail(f"action kind {kind!r} is not one of {known}", "bad-action")
        if action_id is not None:
            self._action_ids.add(action_id)
        self._version += 1
        return changed

    def on_race_state(self, state: str | RaceStatus, *, t_ms: int) -> bool:
        """The race moved to ``state`` (a cloud state name or a RaceStatus).

        Returns False when it already was there. Skipping ahead along the state machine is
        accepted (a subscriber that joined late sees only the latest state); going back
        (finished to live) raises ``LocalProtocolError`` (reason ``"bad-transition"``).
        """
        target = self._status_of(state)
        _int("state t_ms", t_ms, 0, T_MS_MAX, "bad-state")
        if target is self.race_status:
            return False
        if target not in _REACHABLE[self.race_status]:
            raise _fail(
                f"race {self.race_id} is {self.race_status.name.lower()}: it cannot become "
                f"{target.name.lower()}",
                "bad-transition",
            )
        self.race_status = target
        if target is RaceStatus.LIVE and self.start_ms is None:
            self.start_ms = t_ms
        self._version += 1
        return True

    @staticmethod
    def _status_of(state: str | RaceStatus) -> RaceStatus:
        if isinstance(state, RaceStatus):
            return state
        status = RACE_STATES.get(state) if isinstance(state, str) else None
        if status is None:
            raise _fail(f"race state {state!r} is not one of {', '.join(RACE_STATES)}", "bad-state")
        return status

    # -- outputs -----------------------------------------------------------------------

    def frame(self, now_ms: int) -> LiveFrame:
        """The spectators' frame at ``now_ms``; each call is the next tick."""
        standings, _ = self._view(now_ms)
        start = self.course.point_at(0.0) if self.course is not None else (0.0, 0.0, None)
        group, groups = 0, {}
        for s in sorted(standings, key=lambda s: (-(s.progress_m or 0.0), s.bib)):
            group = s.group if s.group is not None else group  # keeps the column compact
            groups[s.rider_id] = min(group, GROUP_MAX)
        riders = []
        for s in sorted(standings, key=lambda s: s.bib):
            gap = None
            if s.gap_ms is not None and s.status is not RiderStatus.NO_SIGNAL:
                gap = min(GAP_DS_MAX, round(s.gap_ms / 100))
            progress = 0 if s.progress_m is None else round(s.progress_m)
            age = FIX_AGE_S_MAX if s.last_fix_age_ms is None else s.last_fix_age_ms // 1000
            riders.append(
                RiderState(
                    bib=s.bib,
                    status=s.status,
                    lat_e7=s.lat_e7 if s.lat_e7 is not None else round(start[0] * 1e7),
                    lon_e7=s.lon_e7 if s.lon_e7 is not None else round(start[1] * 1e7),
                    progress_m=_clamp(progress, -PROGRESS_M_MAX, PROGRESS_M_MAX),
                    speed_cms=_clamp(s.speed_cms or 0, 0, SPEED_CMS_MAX),
                    gap_ds=gap,
                    fix_age_s=_clamp(age, 0, FIX_AGE_S_MAX),
                    group=groups[s.rider_id],
                    penalty_s=_clamp(s.penalty_s, 0, PENALTY_S_MAX),
                    battery_pct=s.battery_pct,
                    charging=s.charging,
                )
            )
        tick, self._tick = self._tick, self._tick + 1
        return LiveFrame(
            race_id=self.race_id,
            tick=tick,
            t_ms=now_ms,
            race_status=self.race_status,
            riders=tuple(riders),
        )

    def standings(self, now_ms: int) -> list[Standing]:
        """The leaderboard at ``now_ms``, position 1 first."""
        return list(self._view(now_ms)[0])

    def groups(self, now_ms: int) -> list[Group]:
        """The groups on the road at ``now_ms``, front first (none without a course)."""
        return list(self._view(now_ms)[1])

    def alerts(self, now_ms: int) -> list[Alert]:
        """What the officials should look at now, by bib then kind."""
        standings, _ = self._view(now_ms)
        out: list[Alert] = []
        for s in sorted(standings, key=lambda s: s.bib):
            out += rider_alerts(
                self._riders[s.rider_id],
                status=s.status,
                marks=self._marks,
                race_status=self.race_status,
                start_ms=self.start_ms,
                now_ms=now_ms,
                settings=self.settings,
            )
        return out

    def arrivals(self, checkpoint: str, *, top: bool = False) -> list[Arrival]:
        """Order of arrival at a checkpoint (``top``: a climb's top), first rider first."""
        marks = self._marks
        if marks is None or not any(m.key == (checkpoint, top) for m in marks.marks):
            where = "top of " if top else ""
            raise _fail(
                f"race {self.race_id} has no {where}checkpoint {checkpoint!r}", "bad-checkpoint"
            )
        crossed = sorted(
            (passage.t_ms, track.bib, track)
            for track in self._riders.values()
            if (passage := track.passages.get((checkpoint, top))) is not None
        )
        return [
            Arrival(i + 1, track.rider_id, bib, track.name, t, t - crossed[0][0])
            for i, (t, bib, track) in enumerate(crossed)
        ]

    # -- the view ----------------------------------------------------------------------

    def _view(self, now_ms: int) -> tuple[list[Standing], list[Group]]:
        _int("now_ms", now_ms, 0, T_MS_MAX, "bad-time")
        cache = self._cache
        if cache is not None and cache[0] == now_ms and cache[1] == self._version:
            return cache[2], cache[3]
        standings, groups = build_view(
            list(self._riders.values()),
            marks=self._marks,
            race_status=self.race_status,
            start_ms=self.start_ms,
            now_ms=now_ms,
            settings=self.settings,
        )
        self._cache = (now_ms, self._version, standings, groups)
        return standings, groups
