"""One rider in the relay's live race model: last position, progress, passages, officials.

:class:`RiderTrack` folds the rider's fixes in, newest or late, with no clock: projection
on the course (a window of race distance around the last progress, sized by the time
since it), monotone progress, checkpoint passages interpolated between two on-course
fixes, and whether the rider stands still or is off course. The race-wide view (gaps,
groups, standings, alerts) is :mod:`sync_protocol.race.scoring`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from enum import StrEnum

from ..course import Course, Projection, crossing_time_ms
from ..frames import RiderStatus
from ..geo import haversine_m
from .progress_log import ProgressLog, Sample
from .settings import ScoringSettings

FINISH_NAME = "Finish"
"""Name of the finish line when the course has no checkpoint of kind "finish"."""


class FixOutcome(StrEnum):
    """What a fix did to the race model."""

    LIVE = "live"
    """The newest fix of the rider: it moved them."""
    LATE = "late"
    """Older than the rider's last fix (backfill): history and passages only."""
    DUPLICATE = "duplicate"
    """Same time as the rider's last fix: ignored."""


@dataclass(frozen=True, slots=True)
class Passage:
    """When a rider crossed a checkpoint's line, interpolated between two fixes."""

    checkpoint: str
    """The checkpoint's name."""
    kind: str
    """The checkpoint's kind (sprint, climb, feed, intermediate, finish)."""
    distance_m: float
    """Race distance of the line crossed (a climb's top when ``top``)."""
    top: bool
    """True for the top of a climb, False for its foot and every other checkpoint."""
    t_ms: int
    """Crossing time, UTC ms, interpolated between the two fixes around the line."""
    bracket_ms: int
    """Time between those two fixes: the crossing's uncertainty (a late fix that narrows
    it refines the passage)."""


@dataclass(frozen=True, slots=True)
class Penalty:
    """A time penalty given by the officials (negative seconds correct an earlier one)."""

    seconds: int
    """Seconds added to the rider's time."""
    reason: str
    """Why, as the official wrote it."""
    t_ms: int
    """When it was given, UTC ms."""
    action_id: str | None
    """The action's id (replays of the same id count once)."""


@dataclass(frozen=True, slots=True)
class Mark:
    """A line on the course whose crossing is recorded: a checkpoint, or a climb's top."""

    checkpoint: str
    """The checkpoint's name."""
    kind: str
    """The checkpoint's kind."""
    distance_m: float
    """Race distance of the line."""
    top: bool = False
    """True for a climb's top."""

    @property
    def key(self) -> tuple[str, bool]:
        """How passages are filed: (checkpoint name, top)."""
        return (self.checkpoint, self.top)


@dataclass(frozen=True, slots=True)
class Marks:
    """Every line of a course to time, by race distance, and which one is the finish."""

    marks: tuple[Mark, ...]
    """The lines, sorted by race distance."""
    distances: tuple[float, ...]
    """Their race distances (for bisection)."""
    finish: Mark
    """The finish line: the course's "finish" checkpoint, else one at ``finish_m``."""

    @classmethod
    def of(cls, course: Course) -> Marks:
        """The lines of ``course``: each checkpoint, each climb's top, and the finish."""
        marks = [Mark(cp.name, cp.kind, cp.distance_m) for cp in course.checkpoints]
        marks += [
            Mark(cp.name, cp.kind, cp.end_m, top=True)
            for cp in course.checkpoints
            if cp.end_m is not None
        ]
        finish = next((m for m in marks if m.kind == "finish"), None)
        if finish is None:
            names = {cp.name for cp in course.checkpoints}
            name = FINISH_NAME if FINISH_NAME not in names else f"{FINISH_NAME} line"
            finish = Mark(name, "finish", course.finish_m)
            marks.append(finish)
        marks.sort(key=lambda m: (m.distance_m, m.checkpoint, m.top))
        return cls(tuple(marks), tuple(m.distance_m for m in marks), finish)


class RiderTrack:
    """Everything the relay knows about one rider in one race (mutable, no I/O)."""

    __slots__ = (
        "_broken",
        "battery_pct",
        "battery_t_ms",
        "bib",
        "charging",
        "ele_dm",
        "last_t_ms",
        "lat_e7",
        "log",
        "lon_e7",
        "low_battery_since_ms",
        "name",
        "off_course_since_ms",
        "official",
        "offset_m",
        "passages",
        "penalties",
        "progress_m",
        "progress_t_ms",
        "rider_id",
        "settings",
        "speed_cms",
        "still_since_ms",
    )

    def __init__(self, rider_id: int, bib: int, name: str, settings: ScoringSettings) -> None:
        self.rider_id, self.bib, self.name, self.settings = rider_id, bib, name, settings
        self.last_t_ms: int | None = None
        """Time of the newest fix."""
        self.lat_e7 = self.lon_e7 = self.ele_dm = self.speed_cms = 0
        self.progress_m: float | None = None
        """Race distance of the newest on-course fix (never decreases)."""
        self.progress_t_ms: int | None = None
        """Time of that fix."""
        self.offset_m: float | None = None
        """Distance from the course line of the newest fix (None: not measured)."""
        self.off_course_since_ms: int | None = None
        """First fix of the current excursion off course."""
        self.still_since_ms: int | None = None
        """First fix of the current run of fixes standing still."""
        self.log = ProgressLog(
            spacing_m=settings.history_spacing_m,
            max_interval_ms=settings.history_max_interval_ms,
            cap=settings.history_cap,
        )
        self.passages: dict[tuple[str, bool], Passage] = {}
        self.official: RiderStatus | None = None
        """DNF, DNS or DSQ when the officials said so (reinstate clears it)."""
        self.penalties: list[Penalty] = []
        self.battery_pct: int | None = None
        """The tracker's battery level from its newest device status, 0..100 %."""
        self.charging = False
        """Whether that status said the tracker is on external power."""
        self.battery_t_ms: int | None = None
        """When the newest device status was read on the tracker, UTC ms."""
        self.low_battery_since_ms: int | None = None
        """First status of the current run below the low-battery level, not charging."""
        self._broken = False  # off course since the last on-course fix

    @property
    def penalty_s(self) -> int:
        """Total penalty in seconds."""
        return sum(p.seconds for p in self.penalties)

    def finish_ms(self, marks: Marks | None) -> int | None:
        """When the rider crossed the finish line (None: not yet, or no course)."""
        if marks is None:
            return None
        passage = self.passages.get(marks.finish.key)
        return None if passage is None else passage.t_ms

    def on_fix(
        self,
        course: Course | None,
        marks: Marks | None,
        t_ms: int,
        lat_e7: int,
        lon_e7: int,
        ele_dm: int,
        speed_cms: int,
        progress_m: float | None,
    ) -> FixOutcome:
        """Fold one fix in (validated by the caller); see :class:`FixOutcome`."""
        last = self.last_t_ms
        if last is not None and t_ms == last:
            return FixOutcome.DUPLICATE
        if last is not None and t_ms < last:
            if course is not None and marks is not None:
                self._late(course, marks, t_ms, lat_e7, lon_e7, progress_m)
            return FixOutcome.LATE
        self._move(t_ms, lat_e7, lon_e7, ele_dm, speed_cms)
        if course is None or marks is None:
            return FixOutcome.LIVE
        if progress_m is None:
            anchor = None
            if self.progress_m is not None and self.progress_t_ms is not None:
                anchor = (self.progress_m, self.progress_t_ms)
            projection = self._project(course, lat_e7, lon_e7, t_ms, anchor)
            self.offset_m = projection.offset_m
            if not projection.on_course:
                if self.off_course_since_ms is None:
                    self.off_course_since_ms = t_ms
                self._broken = True
                return FixOutcome.LIVE
            progress_m = projection.progress_m
        self.off_course_since_ms = None
        prev_p, prev_t = self.progress_m, self.progress_t_ms
        if prev_p is not None and prev_t is not None:
            progress_m = max(prev_p, progress_m)
            if not self._broken and t_ms - prev_t <= self.settings.passage_max_bracket_ms:
                self._cross(marks, (prev_p, prev_t), (progress_m, t_ms))
        self.log.append(progress_m, t_ms, broken=self._broken)
        self._broken = False
        self.progress_m, self.progress_t_ms = progress_m, t_ms
        return FixOutcome.LIVE

    def on_status(self, t_ms: int, battery_pct: int, charging: bool) -> bool:
        """Fold a device status in (validated by the caller); True when it is the newest."""
        if self.battery_t_ms is not None and t_ms <= self.battery_t_ms:
            return False
        low = not charging and battery_pct < self.settings.low_battery_pct
        if not low:
            self.low_battery_since_ms = None
        elif self.low_battery_since_ms is None:
            self.low_battery_since_ms = t_ms
        self.battery_pct, self.charging, self.battery_t_ms = battery_pct, charging, t_ms
        return True

    def battery_at(self, now_ms: int) -> tuple[int | None, bool]:
        """(battery level, charging) to show at ``now_ms``: (None, False) when unknown or
        older than ``battery_stale_ms``."""
        t_ms = self.battery_t_ms
        if t_ms is None or now_ms - t_ms >= self.settings.battery_stale_ms:
            return None, False
        return self.battery_pct, self.charging

    def relocate(self, course: Course | None, marks: Marks | None) -> None:
        """Forget progress and passages (the course changed) and place the last fix on it."""
        s = self.settings
        self.log = ProgressLog(
            spacing_m=s.history_spacing_m,
            max_interval_ms=s.history_max_interval_ms,
            cap=s.history_cap,
        )
        self.passages.clear()
        self.progress_m = self.progress_t_ms = self.offset_m = self.off_course_since_ms = None
        self._broken = False
        t_ms = self.last_t_ms
        if course is None or marks is None or t_ms is None:
            return
        projection = self._project(course, self.lat_e7, self.lon_e7, t_ms, None)
        self.offset_m = projection.offset_m
        if projection.on_course:
            self.progress_m, self.progress_t_ms = projection.progress_m, t_ms
            self.log.append(projection.progress_m, t_ms)
        else:
            self.off_course_since_ms, self._broken = t_ms, True

    def _move(self, t_ms: int, lat_e7: int, lon_e7: int, ele_dm: int, speed_cms: int) -> None:
        """The newest fix: position, speed, and whether the rider stands still."""
        moved_cms = speed_cms
        if self.last_t_ms is not None:
            metres = haversine_m(self.lat_e7 / 1e7, self.lon_e7 / 1e7, lat_e7 / 1e7, lon_e7 / 1e7)
            moved_cms = max(moved_cms, round(metres * 100_000 / (t_ms - self.last_t_ms)))
        if moved_cms >= self.settings.stopped_speed_cms:
            self.still_since_ms = None
        elif self.still_since_ms is None:
            self.still_since_ms = t_ms
        self.last_t_ms = t_ms
        self.lat_e7, self.lon_e7, self.ele_dm, self.speed_cms = lat_e7, lon_e7, ele_dm, speed_cms

    def _project(
        self, course: Course, lat_e7: int, lon_e7: int, t_ms: int, anchor: Sample | None
    ) -> Projection:
        """Project near the anchor (progress, time), or from scratch without one."""
        s, lat, lon = self.settings, lat_e7 / 1e7, lon_e7 / 1e7
        if anchor is None:
            first = course.project(
                lat, lon, last_progress_m=None, max_back_m=s.max_back_m, off_course_m=s.off_course_m
            )
            if first.on_course:
                return first
            # Not near the start (a relay restarted mid-race, a tracker switched on late):
            # the nearest point of the whole course.
            return course.project(
                lat,
                lon,
                last_progress_m=0.0,
                max_advance_m=course.finish_m + s.max_back_m,
                max_back_m=s.max_back_m,
                off_course_m=s.off_course_m,
            )
        progress, at = anchor
        reach = s.max_speed_ms * abs(t_ms - at) / 1000 + s.window_slack_m
        if t_ms >= at:
            ahead, back = reach, s.max_back_m
        else:  # a fix before the anchor: look backwards from it
            ahead, back = s.window_slack_m, reach + s.max_back_m
        return course.project(
            lat,
            lon,
            last_progress_m=progress,
            max_advance_m=ahead,
            max_back_m=back,
            off_course_m=s.off_course_m,
        )

    def _late(
        self,
        course: Course,
        marks: Marks,
        t_ms: int,
        lat_e7: int,
        lon_e7: int,
        progress_m: float | None,
    ) -> None:
        """A backfilled fix: refine the history and record passages it is first to time."""
        before, after = self.log.around(t_ms)
        if after is None:
            return  # after the last on-course fix, before an off-course one: not used
        if progress_m is None:
            projection = self._project(course, lat_e7, lon_e7, t_ms, before or after)
            if not projection.on_course:
                return
            progress_m = projection.progress_m
        slot = self.log.insert(progress_m, t_ms)
        if slot is None or not slot.continuous:
            return
        bracket = self.settings.passage_max_bracket_ms
        here = (slot.progress_m, t_ms)
        if slot.before is not None and t_ms - slot.before[1] <= bracket:
            self._cross(marks, slot.before, here)
        if slot.after[1] - t_ms <= bracket:
            self._cross(marks, here, slot.after)

    def _cross(self, marks: Marks, start: Sample, end: Sample) -> None:
        """Record each line crossed between two fixes, unless a tighter bracket has it."""
        (p0, t0), (p1, t1) = start, end
        i = bisect_right(marks.distances, p0)
        while i < len(marks.marks) and marks.distances[i] <= p1:
            mark = marks.marks[i]
            i += 1
            t = crossing_time_ms(t0, p0, t1, p1, mark.distance_m)
            if t is None:
                continue
            known = self.passages.get(mark.key)
            if known is None or (t1 - t0, t) < (known.bracket_ms, known.t_ms):
                self.passages[mark.key] = Passage(
                    mark.checkpoint, mark.kind, mark.distance_m, mark.top, t, t1 - t0
                )
