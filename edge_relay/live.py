"""The relay's races in play: one :class:`~sync_protocol.race.scoring.RaceScorer` per served race.

Feeds each scorer from three sources — the configuration (course, start list, state and
actions, refreshed from the cloud or restored from the store), fixes and trackers'
battery statuses verified here, and the cloud's live stream (riders on other relays and
their batteries, officials' actions, state changes) — and hands out frames, standings,
alerts and checkpoint splits. Every input is idempotent: actions carry the official's
``action_id``, and an older fix (or battery status) never moves a rider.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from typing import Any

from sync_protocol.device_status import DeviceStatus
from sync_protocol.errors import LocalProtocolError
from sync_protocol.fix import Fix
from sync_protocol.frames import LiveFrame
from sync_protocol.race.scoring import FixOutcome, RaceScorer

from .races import RaceInfo, RelayConfig

log = logging.getLogger("gruppetto.relay.live")


class LiveRaces:
    """Scorers by race id."""

    def __init__(self) -> None:
        self.scorers: dict[int, RaceScorer] = {}
        self._courses: dict[int, Any] = {}

    def configure(self, config: RelayConfig) -> None:
        """Create, update or drop scorers to match the served races."""
        for race_id in set(self.scorers) - set(config.races):
            del self.scorers[race_id]
            self._courses.pop(race_id, None)
        for race in config.races.values():
            scorer = self.scorers.get(race.race_id)
            if scorer is None:
                scorer = self.scorers[race.race_id] = RaceScorer(
                    race.race_id,
                    race.course,
                    {r.rider_id: (r.bib, r.name) for r in race.riders.values()},
                    state=race.state,
                    start_ms=race.start_ms if race.state != "scheduled" else None,
                )
                self._courses[race.race_id] = _course_key(race)
            else:
                self._update(scorer, race)
            for action in race.actions:
                self._action(scorer, action)

    def _update(self, scorer: RaceScorer, race: RaceInfo) -> None:
        known = {s.rider_id for s in scorer.standings(0)}
        for rider in race.riders.values():
            if rider.rider_id not in known:
                try:
                    scorer.add_rider(rider.rider_id, rider.bib, rider.name)
                except LocalProtocolError as exc:
                    log.warning("rider not added", extra={"detail": exc.message})
        key = _course_key(race)
        if key != self._courses.get(race.race_id):
            scorer.set_course(race.course)
            self._courses[race.race_id] = key
        self._state(scorer, race.state, race.start_ms)

    def local_fix(self, race_id: int, rider_id: int, fix: Fix) -> bool:
        """A fix verified (or MAC-checked) here; True when the race's view changed."""
        scorer = self.scorers.get(race_id)
        if scorer is None:
            return False
        try:
            outcome = scorer.on_fix(
                rider_id, fix.t_ms, fix.lat_e7, fix.lon_e7, fix.ele_dm, fix.speed_cms
            )
        except LocalProtocolError as exc:
            log.info("fix not scored", extra={"race": race_id, "detail": exc.message})
            return False
        return outcome is not FixOutcome.DUPLICATE

    def local_status(self, race_id: int, rider_id: int, status: DeviceStatus) -> bool:
        """A tracker's battery status verified here; True when the race's view changed."""
        scorer = self.scorers.get(race_id)
        if scorer is None:
            return False
        try:
            return scorer.on_status(rider_id, status.t_ms, status.battery_pct, status.charging)
        except LocalProtocolError as exc:
            log.info("status not scored", extra={"race": race_id, "detail": exc.message})
            return False

    def cloud_message(self, race_id: int, message: dict[str, Any]) -> bool:
        """A message of the cloud's live stream; True when the race's view changed."""
        scorer = self.scorers.get(race_id)
        if scorer is None:
            return False
        kind = message.get("type")
        try:
            if kind == "snapshot":
                changed = False
                if message.get("race"):
                    changed |= self._state_message(scorer, message["race"])
                for fix in message.get("riders", []):
                    changed |= self._fix_message(scorer, fix)
                for action in message.get("actions", []):
                    changed |= self._action(scorer, action)
                for battery in message.get("batteries", []):
                    changed |= self._battery_message(scorer, battery)
                return changed
            if kind == "fix":
                return self._fix_message(scorer, message)
            if kind == "battery":
                return self._battery_message(scorer, message)
            if kind == "action":
                return self._action(scorer, message)
            if kind == "race":
                return self._state_message(scorer, message)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("bad live message from the cloud", extra={"detail": str(exc)})
        return False

    def cloud_fixes(self, race_id: int, message: dict[str, Any]) -> bool:
        """A ``fixes`` message of the cloud's live stream; True when the race's view changed.

        Its rows are every fix one upload added for a rider, in order (``fields`` names the
        columns). Each goes to the scorer as a ``fix`` message would: a fix newer than the
        rider's last moves them, an older one (backfill after an outage) refines their
        history, and either times the checkpoint lines it is first to bracket.
        """
        scorer = self.scorers.get(race_id)
        if scorer is None:
            return False
        changed = False
        try:
            rider_id = int(message["rider_id"])
            fields = [str(f) for f in message["fields"]]
            for row in message["fixes"]:
                m = dict(zip(fields, row, strict=True))
                try:
                    outcome = scorer.on_fix(
                        rider_id,
                        int(m["t_ms"]),
                        int(m["lat_e7"]),
                        int(m["lon_e7"]),
                        int(m.get("ele_dm") or 0),
                        int(m.get("speed_cms") or 0),
                        m.get("progress_m"),
                    )
                except LocalProtocolError as exc:
                    log.info("cloud fix not scored", extra={"detail": exc.message})
                    if exc.reason == "unknown-rider":
                        break  # so are the rest
                    continue
                changed |= outcome is not FixOutcome.DUPLICATE
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("bad live message from the cloud", extra={"detail": str(exc)})
        return changed

    def _fix_message(self, scorer: RaceScorer, m: dict[str, Any]) -> bool:
        try:
            outcome = scorer.on_fix(
                int(m["rider_id"]),
                int(m["t_ms"]),
                int(m["lat_e7"]),
                int(m["lon_e7"]),
                int(m.get("ele_dm", 0)),
                int(m.get("speed_cms", 0)),
                m.get("progress_m"),
            )
        except LocalProtocolError as exc:
            log.info("cloud fix not scored", extra={"detail": exc.message})
            return False
        return outcome is not FixOutcome.DUPLICATE

    @staticmethod
    def _battery_message(scorer: RaceScorer, m: dict[str, Any]) -> bool:
        try:
            return scorer.on_status(
                int(m["rider_id"]), int(m["t_ms"]), int(m["battery_pct"]), m["charging"]
            )
        except LocalProtocolError as exc:
            log.info("cloud battery status not scored", extra={"detail": exc.message})
            return False

    def _state_message(self, scorer: RaceScorer, m: dict[str, Any]) -> bool:
        return self._state(scorer, str(m["state"]), int(m.get("t_ms") or 0))

    @staticmethod
    def _state(scorer: RaceScorer, state: str, t_ms: int) -> bool:
        try:
            return scorer.on_race_state(state, t_ms=max(t_ms, 0))
        except LocalProtocolError as exc:
            log.info("race state not applied", extra={"detail": exc.message})
            return False

    @staticmethod
    def _action(scorer: RaceScorer, a: dict[str, Any]) -> bool:
        try:
            return scorer.on_action(
                str(a["kind"]),
                t_ms=int(a["t_ms"]),
                rider_id=a.get("rider_id"),
                seconds=int(a.get("seconds") or 0),
                reason=str(a.get("reason") or ""),
                action_id=a.get("action_id"),
            )
        except LocalProtocolError as exc:
            log.info("action not applied", extra={"detail": exc.message})
            return False

    def frame(self, race_id: int, now_ms: int) -> LiveFrame | None:
        """The race's next frame."""
        scorer = self.scorers.get(race_id)
        return None if scorer is None else scorer.frame(now_ms)

    def standings(self, race_id: int, now_ms: int) -> dict[str, Any]:
        """Leaderboard and groups as JSON-friendly data."""
        scorer = self.scorers.get(race_id)
        if scorer is None:
            return {"race_id": race_id, "riders": [], "groups": []}
        return {
            "race_id": race_id,
            "status": scorer.race_status.name.lower(),
            "riders": [_plain(s) for s in scorer.standings(now_ms)],
            "groups": [_plain(g) for g in scorer.groups(now_ms)],
        }

    def alerts(self, race_id: int, now_ms: int) -> list[dict[str, Any]]:
        """What officials should look at."""
        scorer = self.scorers.get(race_id)
        return [] if scorer is None else [_plain(a) for a in scorer.alerts(now_ms)]

    def splits(self, race_id: int) -> dict[str, Any]:
        """Checkpoint splits as JSON-friendly data: each line of the course, in course order.

        A line is a checkpoint (a climb's foot) or a climb's top (``top``), with its
        ``arrivals`` in order: ``position``, ``rider_id``, ``bib``, ``name``, ``t_ms`` (the
        crossing, interpolated between two fixes), ``gap_ms`` to the first rider across and
        ``elapsed_ms`` since the race's start (None while it has not started). A race with
        no course has ``course`` False and no lines. No clock: passages are what fixes
        already showed.
        """
        scorer = self.scorers.get(race_id)
        course = None if scorer is None else scorer.course
        out: dict[str, Any] = {
            "race_id": race_id,
            "status": None if scorer is None else scorer.race_status.name.lower(),
            "start_ms": None if scorer is None else scorer.start_ms,
            "course": course is not None,
            "checkpoints": [],
        }
        if scorer is None or course is None:
            return out
        lines = [(cp.distance_m, cp.name, False, cp.kind) for cp in course.checkpoints]
        lines += [
            (cp.end_m, cp.name, True, cp.kind) for cp in course.checkpoints if cp.end_m is not None
        ]
        start = scorer.start_ms
        for distance, name, top, kind in sorted(lines):
            arrivals = [
                {
                    "position": a.order,
                    "rider_id": a.rider_id,
                    "bib": a.bib,
                    "name": a.name,
                    "t_ms": a.t_ms,
                    "gap_ms": a.gap_ms,
                    "elapsed_ms": None if start is None else a.t_ms - start,
                }
                for a in scorer.arrivals(name, top=top)
            ]
            line = {"name": name, "kind": kind, "distance_m": distance, "top": top}
            out["checkpoints"].append(line | {"arrivals": arrivals})
        return out


def _course_key(race: RaceInfo) -> Any:
    return None if race.course is None else race.course.to_dict()


def _plain(record: Any) -> Any:
    """A dataclass record as JSON-friendly data (enums as their names)."""
    if is_dataclass(record) and not isinstance(record, type):
        return {k: _value(v) for k, v in asdict(record).items()}
    return record


def _value(value: Any) -> Any:
    if hasattr(value, "name") and hasattr(value, "value") and not isinstance(value, str):
        return str(value.name).lower()
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value
