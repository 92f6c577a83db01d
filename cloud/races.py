"""Race management: creation, edits, the state machine, courses and registrations.

Endpoints call these functions; they validate, apply the change in one transaction and
write the audit log entry in that same transaction.
"""

from __future__ import annotations

import time
from typing import Any

from sync_protocol.course import Checkpoint, Course
from sync_protocol.errors import CourseError
from sync_protocol.gpx import course_from_gpx

from .auth.principal import Principal, Role
from .bus import LiveBus
from .errors import ApiError, bad_request, not_found
from .history.store import History
from .store.audit import AuditLog
from .store.races import TRANSITIONS, RaceStore
from .validation import boolean, integer, text, timestamp_ms

MAX_RIDERS = 50


def now_ms() -> int:
    """Wall-clock UTC milliseconds."""
    return time.time_ns() // 1_000_000


class Races:
    """The race service over the race store and the audit log."""

    def __init__(self, races: RaceStore, audit: AuditLog, history: History, bus: LiveBus) -> None:
        self.store = races
        self.audit = audit
        self.history = history
        self.bus = bus

    def get(self, race_id: int) -> dict[str, Any]:
        """A race or 404."""
        race = self.store.get(race_id)
        if race is None:
            raise not_found(f"race {race_id}")
        return race

    def _scheduled(self, race_id: int, doing: str) -> dict[str, Any]:
        race = self.get(race_id)
        if race["state"] != "scheduled":
            raise ApiError(
                409, "race-not-scheduled", f"cannot {doing}: race {race_id} is {race['state']}"
            )
        return race

    def create(self, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        """Create a scheduled race from ``{name, starts_at, max_riders?, registration_open?}``."""
        name = text(data, "name", max_len=100)
        starts = timestamp_ms(data, "starts_at")
        riders = integer(data, "max_riders", low=1, high=MAX_RIDERS, required=False)
        open_ = boolean(data, "registration_open", True)
        t = now_ms()
        with self.store.transaction() as conn:
            race_id = self.store.create(
                conn, name or "", starts or 0, t, riders or MAX_RIDERS, open_
            )
            self.audit.record(conn, t, who.id, who.name, "race.create", "race", race_id, name=name)
        return self.get(race_id)

    def update(self, who: Principal, race_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Edit name, start time, rider limit or registration while scheduled."""
        self._scheduled(race_id, "edit the race")
        fields: dict[str, Any] = {}
        if "name" in data:
            fields["name"] = text(data, "name", max_len=100)
        if "starts_at" in data:
            fields["starts_at_ms"] = timestamp_ms(data, "starts_at")
        if "max_riders" in data:
            fields["max_riders"] = integer(data, "max_riders", low=1, high=MAX_RIDERS)
        if "registration_open" in data:
            fields["registration_open"] = int(boolean(data, "registration_open", True))
        unknown = set(data) - {"name", "starts_at", "max_riders", "registration_open"}
        if unknown or not fields:
            raise bad_request("nothing to change", **{k: "unknown field" for k in unknown})
        t = now_ms()
        with self.store.transaction() as conn:
            if (
                "max_riders" in fields
                and self.store.active_count(conn, race_id) > fields["max_riders"]
            ):
                raise bad_request(
                    "more riders are registered than that",
                    max_riders="below the current number of riders",
                )
            self.store.update(conn, race_id, t, **fields)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "race.update",
                "race",
                race_id,
                **{k: v for k, v in fields.items()},
            )
        return self.get(race_id)

    def delete(self, who: Principal, race_id: int) -> None:
        """Delete a race that has not started."""
        self._scheduled(race_id, "delete the race")
        t = now_ms()
        with self.store.transaction() as conn:
            self.store.delete(conn, race_id)
            self.audit.record(conn, t, who.id, who.name, "race.delete", "race", race_id)

    def change_state(self, who: Principal, race_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Move the race along its state machine (live, neutralised, finished, published).

        The first change to live sets ``started_ms``, the race's real start (see
        :func:`cloud.store.races.gun_ms`); resuming after a neutralisation leaves it.
        """
        target = text(data, "state", max_len=20)
        race = self.get(race_id)
        allowed = TRANSITIONS[race["state"]]
        if target not in allowed:
            options = ", ".join(allowed) or "nothing (results are published)"
            raise ApiError(
                409,
                "bad-transition",
                f"race {race_id} is {race['state']}: it can go to {options}",
                {"state": f"not allowed from {race['state']}"},
            )
        if target == "live" and race["course"] is None:
            raise ApiError(409, "no-course", f"race {race_id} has no course yet: upload a GPX")
        t = now_ms()
        with self.store.transaction() as conn:
            self.store.update(conn, race_id, t, state=target)
            if target == "live":
                self.store.mark_started(conn, race_id, t)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "race.state",
                "race",
                race_id,
                old=race["state"],
                new=target,
            )
        self.bus.publish(race_id, {"type": "race", "race_id": race_id, "state": target, "t_ms": t})
        if target in ("finished", "published"):
            self.history.seal_race(race_id)  # contiguous on disk: fast analytics from now on
        return self.get(race_id)

    def upload_course(self, who: Principal, race_id: int, gpx: bytes, laps: int) -> dict[str, Any]:
        """Set the course from GPX bytes (checkpoints are kept if they still fit)."""
        race = self._scheduled(race_id, "change the course")
        if not 1 <= laps <= 200:
            raise bad_request("laps must be 1..200", laps="must be an integer in 1..200")
        old = race["course"]
        try:
            course = course_from_gpx(gpx, laps=laps)
            if old and old.get("checkpoints"):
                kept = Course.from_dict({**old, "points": course.to_dict()["points"], "laps": laps})
                course = kept
        except CourseError as exc:
            raise bad_request(exc.message, file=exc.reason) from None
        t = now_ms()
        with self.store.transaction() as conn:
            self.store.set_course(conn, race_id, course.to_dict(), t)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "race.course",
                "race",
                race_id,
                points=len(course.points),
                laps=laps,
                length_m=round(course.total_length_m),
            )
        return self.get(race_id)

    def set_checkpoints(self, who: Principal, race_id: int, items: Any) -> dict[str, Any]:
        """Replace the checkpoints: ``[{name, kind, distance_m, end_m?}]``."""
        race = self._scheduled(race_id, "change checkpoints")
        if race["course"] is None:
            raise ApiError(409, "no-course", "upload the course before its checkpoints")
        if not isinstance(items, list) or len(items) > 100:
            raise bad_request("checkpoints must be a list of up to 100", checkpoints="list")
        try:
            checkpoints = tuple(
                Checkpoint(
                    str(c["name"]),
                    str(c["kind"]),
                    float(c["distance_m"]),
                    None if c.get("end_m") is None else float(c["end_m"]),
                )
                for c in items
            )
            course = Course.from_dict({**race["course"], "checkpoints": []})
            course = Course.from_points(
                course.points, laps=course.laps, name=course.name, checkpoints=checkpoints
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_request(
                f"each checkpoint needs name, kind and distance_m ({exc})",
                checkpoints="name, kind, distance_m required",
            ) from None
        except CourseError as exc:
            raise bad_request(exc.message, checkpoints=exc.reason) from None
        t = now_ms()
        with self.store.transaction() as conn:
            self.store.set_course(conn, race_id, course.to_dict(), t)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "race.checkpoints",
                "race",
                race_id,
                count=len(checkpoints),
            )
        return self.get(race_id)

    def register(self, who: Principal, race_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """A racer registers themself; an admin registers a racer (``user_id``, ``bib``)."""
        race = self.get(race_id)
        if who.role is Role.ADMIN:
            user_id = integer(data, "user_id", low=1, high=2**62) or 0
        else:
            user_id = who.id
            if not race["registration_open"]:
                raise ApiError(
                    409, "registration-closed", f"registration for race {race_id} is closed"
                )
        if race["state"] != "scheduled":
            raise ApiError(409, "race-not-scheduled", f"race {race_id} has already started")
        rider = self.store.one("SELECT role FROM users WHERE id = ?", (user_id,))
        if rider is None or rider["role"] != Role.RACER.value:
            raise bad_request("only racer accounts can ride", user_id="not a racer account")
        bib = integer(data, "bib", low=1, high=65_535, required=False)
        t = now_ms()
        with self.store.transaction() as conn:
            existing = self.store.registration(race_id, user_id)
            joining = existing is None or existing["status"] == "withdrawn"
            if joining and self.store.active_count(conn, race_id) >= race["max_riders"]:
                limit = race["max_riders"]
                raise ApiError(409, "race-full", f"race {race_id} is full: it holds up to {limit}")
            if bib is None:
                bib = existing["bib"] if existing else self.store.next_bib(conn, race_id)
            if self.store.bib_taken(conn, race_id, bib, user_id):
                raise ApiError(409, "bib-taken", f"bib {bib} is taken", {"bib": "already taken"})
            self.store.register(conn, race_id, user_id, bib, t)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "registration.add",
                "race",
                race_id,
                user_id=user_id,
                bib=bib,
            )
        return {"race_id": race_id, "user_id": user_id, "bib": bib, "status": "registered"}

    def withdraw(self, who: Principal, race_id: int, user_id: int) -> None:
        """A racer withdraws themself; an admin removes anyone."""
        self.get(race_id)
        if who.role is not Role.ADMIN and who.id != user_id:
            raise ApiError(403, "forbidden", "racers can withdraw only themselves")
        existing = self.store.registration(race_id, user_id)
        if existing is None or existing["status"] == "withdrawn":
            raise not_found(f"registration of user {user_id} in race {race_id}")
        t = now_ms()
        with self.store.transaction() as conn:
            self.store.withdraw(conn, race_id, user_id)
            self.audit.record(
                conn, t, who.id, who.name, "registration.remove", "race", race_id, user_id=user_id
            )
