"""The live frame's data: what spectators see of one race at one tick, and its limits.

Pure data, no I/O. :class:`LiveFrame` and :class:`RiderState` validate their fields on
construction (``LocalProtocolError``, reason ``"invalid-frame"``); the codec in
:mod:`sync_protocol.frames` writes and reads them and re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import LocalProtocolError

MAX_RIDERS = 255
"""The most riders one frame carries."""

MAX_SAFE = 2**53 - 1
"""The largest integer a browser holds exactly: the ceiling of every varint in a frame."""

T_MS_MAX = 2**51 - 1
"""The latest ``t_ms`` (year 73,000): the zigzag difference of two still fits :data:`MAX_SAFE`."""

U32_MAX = 2**32 - 1
BIB_MAX = 65535
LAT_E7_MAX = 900_000_000
LON_E7_MAX = 1_800_000_000
PROGRESS_M_MAX = 10_000_000
SPEED_CMS_MAX = 65535
GAP_DS_MAX = 2**31 - 1
FIX_AGE_S_MAX = 65535
GROUP_MAX = 255
PENALTY_S_MAX = 2**31 - 1
BATTERY_PCT_MAX = 100


class FrameKind(IntEnum):
    """The kind byte of a frame."""

    SNAPSHOT = 1
    DELTA = 2


class RaceStatus(IntEnum):
    """Where a race is in its life (one byte on the wire)."""

    SCHEDULED = 0
    LIVE = 1
    NEUTRALISED = 2
    FINISHED = 3
    RESULTS_PUBLISHED = 4


class RiderStatus(IntEnum):
    """Where a rider is in the race (one varint on the wire)."""

    RACING = 0
    FINISHED = 1
    DNF = 2
    DNS = 3
    DSQ = 4
    STOPPED = 5
    NO_SIGNAL = 6


RACE_STATUSES = {int(s): s for s in RaceStatus}
"""Race statuses by wire value."""
RIDER_STATUSES = {int(s): s for s in RiderStatus}
"""Rider statuses by wire value."""


def invalid_frame(message: str) -> LocalProtocolError:
    """The error for a frame this side was asked to build or encode with a bad value."""
    return LocalProtocolError(message, reason="invalid-frame")


def check_int(name: str, value: object, low: int, high: int) -> None:
    """Refuse ``value`` unless it is an int (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_frame(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiderState:
    """One rider as spectators see them at one tick."""

    bib: int
    """Race number, 1..65535; unique within a race."""
    status: RiderStatus
    """Racing, finished, out of the race, or not heard from."""
    lat_e7: int
    """Latitude of the last fix in 1e-7 degrees (-900000000..900000000)."""
    lon_e7: int
    """Longitude of the last fix in 1e-7 degrees (-1800000000..1800000000)."""
    progress_m: int
    """Distance along the course in metres (negative before the start line)."""
    speed_cms: int
    """Speed in cm/s, 0..65535."""
    gap_ds: int | None = None
    """Time behind the leader at the same point of the course, in tenths of a second;
    ``None`` when unknown."""
    fix_age_s: int = 0
    """Seconds since the rider's last fix, 0..65535; producers saturate at 65535."""
    group: int = 0
    """Index of the rider's group on the road, 0 = the front group."""
    penalty_s: int = 0
    """Time penalty in seconds given by the officials, >= 0."""
    battery_pct: int | None = None
    """The tracker's battery level, 0..100 %; ``None`` when unknown (no status received,
    or the last one is too old to trust)."""
    charging: bool = False
    """Whether the tracker is on external power; only with a known battery level."""

    def __post_init__(self) -> None:
        check_int("bib", self.bib, 1, BIB_MAX)
        who = f"rider {self.bib}"
        if not isinstance(self.status, RiderStatus):
            raise invalid_frame(f"{who}: status must be a RiderStatus, got {self.status!r}")
        check_int(f"{who}: lat_e7", self.lat_e7, -LAT_E7_MAX, LAT_E7_MAX)
        check_int(f"{who}: lon_e7", self.lon_e7, -LON_E7_MAX, LON_E7_MAX)
        check_int(f"{who}: progress_m", self.progress_m, -PROGRESS_M_MAX, PROGRESS_M_MAX)
        check_int(f"{who}: speed_cms", self.speed_cms, 0, SPEED_CMS_MAX)
        if self.gap_ds is not None:
            check_int(f"{who}: gap_ds", self.gap_ds, 0, GAP_DS_MAX)
        check_int(f"{who}: fix_age_s", self.fix_age_s, 0, FIX_AGE_S_MAX)
        check_int(f"{who}: group", self.group, 0, GROUP_MAX)
        check_int(f"{who}: penalty_s", self.penalty_s, 0, PENALTY_S_MAX)
        if self.battery_pct is not None:
            check_int(f"{who}: battery_pct", self.battery_pct, 0, BATTERY_PCT_MAX)
        if not isinstance(self.charging, bool):
            raise invalid_frame(f"{who}: charging must be a bool, got {self.charging!r}")
        if self.charging and self.battery_pct is None:
            raise invalid_frame(f"{who}: charging needs a known battery_pct")


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveFrame:
    """Everything a spectator page shows about one race at one tick."""

    race_id: int
    """The race, 0..2**32-1."""
    tick: int
    """Tick number, counting up by one a second within the race, 0..2**53-1."""
    t_ms: int
    """UTC time of the tick in milliseconds since the Unix epoch, 0..2**51-1."""
    race_status: RaceStatus
    """Scheduled, live, neutralised, finished or results published."""
    riders: tuple[RiderState, ...] = ()
    """The riders in ascending bib order, bibs unique, at most 255."""

    def __post_init__(self) -> None:
        check_int("race_id", self.race_id, 0, U32_MAX)
        check_int("tick", self.tick, 0, MAX_SAFE)
        check_int("t_ms", self.t_ms, 0, T_MS_MAX)
        if not isinstance(self.race_status, RaceStatus):
            raise invalid_frame(f"race_status must be a RaceStatus, got {self.race_status!r}")
        if not isinstance(self.riders, tuple):
            raise invalid_frame("riders must be a tuple")
        if len(self.riders) > MAX_RIDERS:
            raise invalid_frame(
                f"a frame carries at most {MAX_RIDERS} riders, got {len(self.riders)}"
            )
        previous = 0
        for rider in self.riders:
            if not isinstance(rider, RiderState):
                raise invalid_frame(f"riders must be RiderState, got {rider!r}")
            if rider.bib <= previous:
                raise invalid_frame(
                    f"riders must be sorted by unique bib: {rider.bib} after {previous}"
                )
            previous = rider.bib
