"""Alerts for the officials: riders who stopped, went silent, left the course, missed
a checkpoint, or whose tracker's battery runs low.

Alerts are not stored: :func:`rider_alerts` derives them from a rider's state at
``now_ms``, so an alert clears by itself when its cause ends (the rider moves on, a fix
arrives, they are back on course, a late fix times the checkpoint, the tracker is
plugged in). An alert's ``since_ms`` stays the same while it lasts, so (kind, rider_id,
checkpoint, since_ms) identifies it across calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..frames import RaceStatus, RiderStatus
from .rider_track import Marks, RiderTrack
from .settings import ScoringSettings

_OUT = frozenset({RiderStatus.DNF, RiderStatus.DNS, RiderStatus.DSQ})
_RUNNING = frozenset({RaceStatus.LIVE, RaceStatus.NEUTRALISED})


class AlertKind(StrEnum):
    """Why the officials should look at a rider."""

    STOPPED = "stopped"
    """Standing still on course, not finished, for long (race live)."""
    SILENT = "silent"
    """No fix for long (or none at all since the start)."""
    OFF_COURSE = "off-course"
    """The last fix is farther from the course line than allowed."""
    MISSED_CHECKPOINT = "missed-checkpoint"
    """Past a checkpoint with no passage timed: off course around it, a tracker started
    late, or a gap in the fixes that no late fix has filled yet."""
    LOW_BATTERY = "low-battery"
    """The tracker's battery is below ``low_battery_pct`` and not charging: it may go
    silent before the finish."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing for the officials to look at."""

    kind: AlertKind
    """What is wrong."""
    rider_id: int
    """The rider."""
    bib: int
    """Their race number."""
    since_ms: int
    """When it started, UTC ms (stable while the alert lasts)."""
    detail: str
    """One line for people ("no fix for 2 min 05 s")."""
    checkpoint: str | None = None
    """The checkpoint of a missed-checkpoint alert (a climb's top is "<name> (top)")."""


def duration(ms: int) -> str:
    """A duration for people: "45 s", "2 min 05 s", "1 h 03 min"."""
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def rider_alerts(
    track: RiderTrack,
    *,
    status: RiderStatus,
    marks: Marks | None,
    race_status: RaceStatus,
    start_ms: int | None,
    now_ms: int,
    settings: ScoringSettings,
) -> list[Alert]:
    """The alerts of one rider at ``now_ms`` (none before the start or once out)."""
    if race_status is RaceStatus.SCHEDULED or status in _OUT:
        return []
    alerts: list[Alert] = []

    def alert(kind: AlertKind, since: int, detail: str, checkpoint: str | None = None) -> None:
        alerts.append(Alert(kind, track.rider_id, track.bib, since, detail, checkpoint))

    if race_status in _RUNNING and status is not RiderStatus.FINISHED:
        last = track.last_t_ms
        silent = False
        if last is None:
            if start_ms is not None and now_ms - start_ms >= settings.silent_alert_ms:
                silent = True
                alert(AlertKind.SILENT, start_ms, "no fix received since the start")
        elif now_ms - last >= settings.silent_alert_ms:
            silent = True
            alert(AlertKind.SILENT, last, f"no fix for {duration(now_ms - last)}")
        still = track.still_since_ms
        if race_status is RaceStatus.LIVE and still is not None and not silent:
            since = still if start_ms is None else max(still, start_ms)
            if now_ms - since >= settings.stopped_alert_ms:
                alert(AlertKind.STOPPED, since, f"standing still for {duration(now_ms - since)}")
        if track.off_course_since_ms is not None:
            offset = track.offset_m or 0.0
            alert(AlertKind.OFF_COURSE, track.off_course_since_ms, f"{offset:,.0f} m off course")
        battery, charging = track.battery_at(now_ms)
        if battery is not None and not charging and battery < settings.low_battery_pct:
            since = track.low_battery_since_ms or track.battery_t_ms or now_ms
            alert(AlertKind.LOW_BATTERY, since, f"tracker battery at {battery}%")
    progress = track.progress_m
    if marks is not None and progress is not None:
        for mark in marks.marks:
            beyond = mark.distance_m + settings.missed_margin_m
            if beyond >= progress:
                break
            if mark.key in track.passages:
                continue
            at = track.log.time_at(beyond)
            since = round(at) if at is not None else track.progress_t_ms or now_ms
            name = f"{mark.checkpoint} (top)" if mark.top else mark.checkpoint
            detail = f"no passage at {name} ({mark.distance_m / 1000:,.1f} km)"
            alert(AlertKind.MISSED_CHECKPOINT, since, detail, name)
    return alerts
