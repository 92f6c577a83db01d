"""What the console shows of a race, whichever server it came from, and how it reads.

A :class:`RaceView` is built either from :class:`~sync_protocol.race.scoring.RaceScorer`
records (the console scoring the cloud's live stream itself) or from the relay's
``/standings`` and ``/alerts`` JSON (the same records, enums as lower-case names), so the
screens never care which. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_protocol.race.alerts import Alert
from sync_protocol.race.groups import Group
from sync_protocol.race.standings import Standing

__all__ = [
    "LIVE_LINK_MS",
    "LOW_BATTERY_PCT",
    "NO_BATTERY",
    "AlertRow",
    "GroupRow",
    "RaceView",
    "RiderRow",
    "age",
    "battery",
    "distance",
    "gap",
    "speed",
]

LIVE_LINK_MS = 10_000
"""A tracker heard from within this long is "live"; then "late" until the rider shows
as no signal (30 s by default), then "lost"."""
NO_BATTERY = "—"
"""What the Batt column shows when the level is unknown: no device status from the
tracker yet, or the newest is too old to trust (the scorer's ``battery_stale_ms``)."""
LOW_BATTERY_PCT = 20
"""A level below this shows as a warning (the race model's low-battery alert default)."""
CHARGING = "⚡"
"""Marks a tracker on external power."""
RACE_STATES = {"results_published": "published"}
"""RaceStatus names that differ from the cloud's race states."""


def _name(value: Any) -> str:
    """An enum (or its JSON form) as a lower-case word."""
    name = getattr(value, "name", None)
    text = str(name if isinstance(name, str) else value or "").lower()
    return text.replace("_", " ") if text != "no_signal" else "no signal"


@dataclass(frozen=True, slots=True)
class RiderRow:
    """One line of the leaderboard."""

    position: int
    """1..n."""
    rider_id: int
    """The rider."""
    bib: int
    """Race number."""
    name: str
    """Display name."""
    status: str
    """racing, finished, stopped, no signal, dnf, dns, dsq."""
    gap_ms: int | None
    """Behind the leader at the same point (None: unknown)."""
    speed_cms: int | None
    """Speed of the last fix."""
    to_go_m: float | None
    """Distance to the finish."""
    age_ms: int | None
    """Since the last fix (None: none yet)."""
    penalty_s: int
    """Total time penalty."""
    group: int | None
    """Index of the rider's group on the road."""
    via: str = ""
    """How the newest fix arrived ("relay 3", "direct"), when the source says."""
    battery_pct: int | None = None
    """The tracker's battery level, 0..100 % (None: unknown or stale)."""
    charging: bool = False
    """Whether the tracker is on external power."""

    @property
    def link(self) -> str:
        """The tracker's link: live, late, lost or none, and the way it came."""
        if self.age_ms is None:
            state = "none"
        elif self.age_ms < LIVE_LINK_MS:
            state = "live"
        elif self.status != "no signal":
            state = "late"
        else:
            state = "lost"
        return f"{state} via {self.via}" if self.via and self.age_ms is not None else state

    @classmethod
    def from_standing(cls, s: Standing, via: str = "") -> RiderRow:
        """From the scorer's record."""
        return cls(
            s.position,
            s.rider_id,
            s.bib,
            s.name,
            _name(s.status),
            s.gap_ms,
            s.speed_cms,
            s.distance_to_go_m,
            s.last_fix_age_ms,
            s.penalty_s,
            s.group,
            via,
            s.battery_pct,
            s.charging,
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RiderRow:
        """From the relay's ``/standings`` JSON."""
        return cls(
            int(d["position"]),
            int(d["rider_id"]),
            int(d["bib"]),
            str(d.get("name") or ""),
            _name(d.get("status")),
            _opt_int(d.get("gap_ms")),
            _opt_int(d.get("speed_cms")),
            None if d.get("distance_to_go_m") is None else float(d["distance_to_go_m"]),
            _opt_int(d.get("last_fix_age_ms")),
            int(d.get("penalty_s") or 0),
            _opt_int(d.get("group")),
            battery_pct=_opt_int(d.get("battery_pct")),
            charging=d.get("charging") is True,
        )


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One group on the road."""

    index: int
    """0 for the front group."""
    role: str
    """breakaway, peloton, chase, group, straggler, head of race."""
    bibs: tuple[int, ...]
    """Its riders, front first."""
    gap_ms: int | None
    """Behind the front group."""

    @classmethod
    def from_group(cls, g: Group) -> GroupRow:
        """From the scorer's record."""
        return cls(g.index, str(g.role), g.bibs, g.gap_ms)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GroupRow:
        """From the relay's JSON."""
        return cls(
            int(d["index"]),
            _name(d.get("role")),
            tuple(int(b) for b in d.get("bibs") or ()),
            _opt_int(d.get("gap_ms")),
        )


@dataclass(frozen=True, slots=True)
class AlertRow:
    """Something for an official to look at."""

    kind: str
    """stopped, silent, off-course, missed-checkpoint."""
    rider_id: int
    """The rider."""
    bib: int
    """Their bib."""
    since_ms: int
    """Since when, UTC ms."""
    detail: str
    """One line for people."""

    @classmethod
    def from_alert(cls, a: Alert) -> AlertRow:
        """From the scorer's record."""
        return cls(str(a.kind), a.rider_id, a.bib, a.since_ms, a.detail)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AlertRow:
        """From the relay's JSON (the kind as its enum name or value)."""
        kind = str(d.get("kind") or "").lower().replace("_", "-")
        return cls(
            kind, int(d["rider_id"]), int(d["bib"]), int(d["since_ms"]), str(d.get("detail"))
        )


@dataclass(frozen=True, slots=True)
class RaceView:
    """The race at one instant, as the console shows it."""

    state: str
    """scheduled, live, neutralised, finished, published."""
    source: str
    """Where it came from ("cloud", "relay finish-line")."""
    riders: tuple[RiderRow, ...]
    """The leaderboard, position 1 first."""
    groups: tuple[GroupRow, ...]
    """Groups on the road, front first."""
    alerts: tuple[AlertRow, ...]
    """Alerts, by bib."""

    @classmethod
    def from_relay(
        cls, source: str, standings: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]
    ) -> RaceView:
        """From the relay's ``/standings`` and ``/alerts``."""
        state = str(standings.get("status") or "scheduled")
        return cls(
            RACE_STATES.get(state, state),
            source,
            tuple(RiderRow.from_json(r) for r in standings.get("riders") or ()),
            tuple(GroupRow.from_json(g) for g in standings.get("groups") or ()),
            tuple(AlertRow.from_json(a) for a in alerts),
        )

    def rider(self, rider_id: int) -> RiderRow | None:
        """A rider's row."""
        return next((r for r in self.riders if r.rider_id == rider_id), None)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def gap(ms: int | None) -> str:
    """A gap for the board: "—", "+0:07", "+1:02:03"."""
    if ms is None:
        return "—"
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{secs:02d}" if hours else f"+{minutes}:{secs:02d}"


def speed(cms: int | None) -> str:
    """km/h with one decimal."""
    return "—" if cms is None else f"{cms * 0.036:.1f}"


def distance(m: float | None) -> str:
    """Kilometres with two decimals."""
    return "—" if m is None else f"{m / 1000:.2f}"


def battery(pct: int | None, charging: bool) -> str:
    """A battery level for the board: "74%", "12% ⚡" (charging), "—" (unknown)."""
    if pct is None:
        return NO_BATTERY
    return f"{pct}% {CHARGING}" if charging else f"{pct}%"


def age(ms: int | None) -> str:
    """Time since the last fix: "3 s", "2 min", "1 h"."""
    if ms is None:
        return "—"
    seconds = max(0, ms) // 1000
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
