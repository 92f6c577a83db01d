"""The thresholds of live scoring on the relay, in one validated settings record."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import LocalProtocolError


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringSettings:
    """How the relay's race model groups riders, raises alerts and keeps history.

    Every value must be positive (finite for the distances); construction raises
    :class:`~sync_protocol.errors.LocalProtocolError` (reason ``"bad-settings"``) otherwise.
    """

    group_gap_ms: int = 3_000
    """Consecutive riders less than this far apart in time (at the same point of the
    course) ride in the same group."""
    peloton_min_riders: int = 3
    """The largest group is the peloton only when it has at least this many riders."""
    stopped_speed_cms: int = 100
    """Below this speed (reported, and measured between fixes) a rider is standing still."""
    stopped_status_ms: int = 30_000
    """Standing still this long makes a racing rider's status "stopped" in frames."""
    stopped_alert_ms: int = 120_000
    """Standing still this long on course, not finished, raises a "stopped" alert."""
    no_signal_ms: int = 30_000
    """No fix for this long makes a rider's status "no signal" in frames."""
    silent_alert_ms: int = 60_000
    """No fix for this long raises a "silent" alert."""
    off_course_m: float = 200.0
    """A fix farther than this from the course line is off course: it moves the rider's
    position but not their progress, and raises an "off-course" alert."""
    missed_margin_m: float = 100.0
    """A rider this far past a checkpoint with no passage recorded raises a
    "missed-checkpoint" alert."""
    passage_max_bracket_ms: int = 300_000
    """A checkpoint passage is interpolated only between two on-course fixes at most this
    far apart in time; a late (backfilled) fix inside a longer gap records it later."""
    max_speed_ms: float = 30.0
    """Fastest plausible speed along the course, m/s: sizes the projection window."""
    window_slack_m: float = 100.0
    """Added to the projection window for GPS error and bends, metres."""
    max_back_m: float = 200.0
    """How far behind the last progress a fix may project (GPS error, backing up)."""
    history_spacing_m: float = 10.0
    """Progress history keeps about one sample per this many metres (gaps between riders
    are interpolated from it)."""
    history_max_interval_ms: int = 10_000
    """A history sample is kept when the next one is this much later, whatever the
    distance, so a stop is remembered where it happened."""
    history_cap: int = 4_096
    """Most samples per rider; past it, the older half is thinned by two (memory stays
    bounded for any race length)."""
    battery_stale_ms: int = 300_000
    """A tracker's battery level older than this is not shown (unknown in frames): a
    tracker that uploads reports it at least every minute."""
    low_battery_pct: int = 20
    """A tracker below this battery level, not charging, raises a "low-battery" alert."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, int):
                ok = type(value) is int and value > 0
            else:
                ok = (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value > 0
                )
            if not ok:
                raise LocalProtocolError(
                    f"scoring setting {f.name} must be a positive "
                    f"{'integer' if isinstance(f.default, int) else 'number'}, got {value!r}",
                    reason="bad-settings",
                )
        if self.low_battery_pct > 100:
            raise LocalProtocolError(
                f"scoring setting low_battery_pct must be at most 100, got {self.low_battery_pct}",
                reason="bad-settings",
            )
        if self.history_cap < 8:
            raise LocalProtocolError(
                f"scoring setting history_cap must be at least 8, got {self.history_cap}",
                reason="bad-settings",
            )
