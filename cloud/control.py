"""Race control: officials' actions on riders (time penalties, DNF, DNS, DSQ, reinstate).

Each action carries an ``action_id`` chosen by the client (a UUID): the console queues
actions while offline and replays them later, and a replay is recognised and answered
with the recorded action, so every action counts exactly once. Actions are audited and
published on the live bus; results read statuses and penalty totals from them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .auth.principal import Principal
from .bus import LiveBus
from .errors import ApiError, bad_request, not_found
from .races import now_ms
from .store.actions import ActionStore
from .store.audit import AuditLog
from .store.races import RaceStore
from .validation import integer, text

KINDS = {"penalty": None, "dnf": "dnf", "dns": "dns", "dsq": "dsq", "reinstate": "registered"}
"""Action kinds and the registration status each sets (None: status unchanged)."""
ACTION_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


class RaceControl:
    """Records officials' actions."""

    def __init__(
        self, races: RaceStore, actions: ActionStore, audit: AuditLog, bus: LiveBus
    ) -> None:
        self.races, self.actions, self.audit, self.bus = races, actions, audit, bus

    def act(
        self, who: Principal, race_id: int, data: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Record an action; returns it and whether it was new (False: a replay)."""
        action_id = data.get("action_id") or str(uuid.uuid4())
        if not isinstance(action_id, str) or not ACTION_ID.match(action_id):
            raise bad_request(
                "action_id must be 8-64 letters, digits or dashes (a UUID)", action_id="a UUID"
            )
        recorded = self.actions.by_action_id(action_id)
        if recorded is not None:
            if recorded["race_id"] != race_id:
                raise ApiError(409, "action-id-reused", "this action_id belongs to another race")
            return recorded, False
        race = self.races.get(race_id)
        if race is None:
            raise not_found(f"race {race_id}")
        kind = text(data, "kind", max_len=20)
        if kind not in KINDS:
            raise bad_request(f"kind must be one of {', '.join(KINDS)}", kind="unknown kind")
        rider_id = integer(data, "rider_id", low=1, high=2**62) or 0
        registration = self.races.registration(race_id, rider_id)
        if registration is None or registration["status"] == "withdrawn":
            raise bad_request(f"rider {rider_id} is not in race {race_id}", rider_id="not in race")
        seconds = 0
        if kind == "penalty":
            seconds = integer(data, "seconds", low=-3_600, high=3_600) or 0
            if seconds == 0:
                raise bad_request(
                    "a penalty needs seconds (negative to correct one)",
                    seconds="non-zero, -3600..3600",
                )
        reason = text(data, "reason", min_len=3, max_len=300) or ""
        action: dict[str, Any] = {
            "action_id": action_id,
            "race_id": race_id,
            "rider_id": rider_id,
            "kind": kind,
            "seconds": seconds,
            "reason": reason,
            "actor_id": who.id,
            "actor": who.name,
            "t_ms": now_ms(),
        }
        with self.actions.transaction() as conn:
            action["id"] = self.actions.add(conn, action)
            status = KINDS[kind]
            if status is not None:
                self.actions.set_status(conn, race_id, rider_id, status)
            self.audit.record(
                conn,
                action["t_ms"],
                who.id,
                who.name,
                f"action.{kind}",
                "race",
                race_id,
                rider_id=rider_id,
                seconds=seconds,
                reason=reason,
            )
        self.bus.publish(race_id, {"type": "action", **action, "bib": registration["bib"]})
        return action, True
