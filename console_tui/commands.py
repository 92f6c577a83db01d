"""Race-control commands: what an official decided, as the cloud and the relay take it.

A :class:`Command` is built once, when the official confirms, with a fresh UUID
``action_id``; every later attempt (to the cloud, the event relay, or from the local queue)
sends the same body, so the servers count it once. No I/O here.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from .errors import BadCommand

__all__ = [
    "FROM_STATES",
    "RACE_COMMANDS",
    "RIDER_KINDS",
    "Command",
    "Delivery",
    "Receipt",
    "label",
]

RIDER_KINDS: dict[str, str] = {
    "penalty": "time penalty",
    "dnf": "DNF (did not finish)",
    "dns": "DNS (did not start)",
    "dsq": "DSQ (disqualified)",
    "reinstate": "reinstate",
}
"""Actions on one rider (the cloud's ``POST /api/races/{id}/actions`` kinds)."""

RACE_COMMANDS: dict[str, str] = {
    "start": "live",
    "neutralise": "neutralised",
    "resume": "live",
    "finish": "finished",
    "publish": "published",
}
"""Commands on the whole race and the state each asks for (``POST .../state``)."""

FROM_STATES: dict[str, tuple[str, ...]] = {
    "start": ("scheduled",),
    "neutralise": ("live",),
    "resume": ("neutralised",),
    "finish": ("live", "neutralised"),
    "publish": ("finished",),
}
"""The race states each race command may be given in (the cloud's state machine)."""

REASON_MIN, REASON_MAX = 3, 300
PENALTY_MAX_S = 3_600


def label(kind: str) -> str:
    """A command kind for people ("time penalty", "neutralise")."""
    return RIDER_KINDS.get(kind, kind)


@dataclass(frozen=True, slots=True)
class Command:
    """One official decision; validated when built (:class:`BadCommand` otherwise)."""

    action_id: str
    """The idempotency key (a UUID): every attempt sends it, the servers count it once."""
    race_id: int
    """The race."""
    kind: str
    """A rider action (:data:`RIDER_KINDS`) or a race command (:data:`RACE_COMMANDS`)."""
    official: str
    """Who decided (the logged-in username)."""
    decided_ms: int
    """When they confirmed it, UTC ms."""
    rider_id: int | None = None
    """The rider of a rider action (None for race commands)."""
    bib: int | None = None
    """Their bib, for people."""
    name: str = ""
    """Their name, for people."""
    seconds: int = 0
    """A penalty's seconds (negative corrects an earlier one)."""
    reason: str = ""
    """Why (required for rider actions, 3..300 characters)."""

    def __post_init__(self) -> None:
        if self.kind in RIDER_KINDS:
            if self.rider_id is None or self.rider_id < 1:
                raise BadCommand(f"{label(self.kind)} needs a rider")
            reason = self.reason.strip()
            if not REASON_MIN <= len(reason) <= REASON_MAX:
                raise BadCommand(f"the reason must be {REASON_MIN}..{REASON_MAX} characters")
            object.__setattr__(self, "reason", reason)
            if self.kind == "penalty":
                if not self.seconds or not -PENALTY_MAX_S <= self.seconds <= PENALTY_MAX_S:
                    raise BadCommand(
                        f"a penalty is a non-zero number of seconds in "
                        f"-{PENALTY_MAX_S}..{PENALTY_MAX_S}"
                    )
            elif self.seconds:
                raise BadCommand(f"{label(self.kind)} takes no seconds")
        elif self.kind in RACE_COMMANDS:
            if self.rider_id is not None:
                raise BadCommand(f"{self.kind} acts on the whole race, not a rider")
        else:
            known = ", ".join([*RIDER_KINDS, *RACE_COMMANDS])
            raise BadCommand(f"unknown command {self.kind!r} (one of {known})")
        if not self.official:
            raise BadCommand("a command needs the official who decided it")

    @classmethod
    def new(cls, race_id: int, kind: str, official: str, now_ms: int, **fields: Any) -> Command:
        """A command with a fresh ``action_id``."""
        return cls(str(uuid.uuid4()), race_id, kind, official, now_ms, **fields)

    @property
    def is_race_command(self) -> bool:
        """True for start, neutralise, resume, finish and publish."""
        return self.kind in RACE_COMMANDS

    @property
    def target_state(self) -> str | None:
        """The race state a race command asks for."""
        return RACE_COMMANDS.get(self.kind)

    @property
    def path(self) -> str:
        """Where it is posted, on the cloud and on the relay alike."""
        suffix = "state" if self.is_race_command else "actions"
        return f"/api/races/{self.race_id}/{suffix}"

    def body(self) -> dict[str, Any]:
        """The JSON body (the same for every attempt and both servers)."""
        if self.is_race_command:
            return {"state": self.target_state, "action_id": self.action_id}
        body: dict[str, Any] = {
            "action_id": self.action_id,
            "kind": self.kind,
            "rider_id": self.rider_id,
            "reason": self.reason,
        }
        if self.kind == "penalty":
            body["seconds"] = self.seconds
        return body

    def describe(self) -> str:
        """One line for people: "time penalty +30 s to #12 Ada: drafting"."""
        if self.is_race_command:
            return f"{self.kind} the race (to {self.target_state})"
        who = f"rider {self.rider_id}"
        if self.bib is not None:
            who = f"#{self.bib} {self.name}".strip()
        what = label(self.kind)
        if self.kind == "penalty":
            what = f"{what} {self.seconds:+d} s"
        return f"{what} to {who}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        """As stored in the local queue file."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Command:
        """Back from the queue file; :class:`BadCommand` on anything malformed."""
        if not isinstance(data, dict):
            raise BadCommand(f"a queued command must be an object, got {type(data).__name__}")
        try:
            return cls(
                action_id=str(data["action_id"]),
                race_id=int(data["race_id"]),
                kind=str(data["kind"]),
                official=str(data["official"]),
                decided_ms=int(data["decided_ms"]),
                rider_id=None if data.get("rider_id") is None else int(data["rider_id"]),
                bib=None if data.get("bib") is None else int(data["bib"]),
                name=str(data.get("name") or ""),
                seconds=int(data.get("seconds") or 0),
                reason=str(data.get("reason") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadCommand(f"a queued command is malformed: {exc!r}") from None


class Delivery(StrEnum):
    """Where a command ended up."""

    CLOUD = "recorded by the cloud"
    """The cloud recorded it (or had already: a replay of the same ``action_id``)."""
    SETTLED = "already done"
    """A race command whose state the race already had (a replay after a lost answer)."""
    RELAY = "queued on the relay"
    """The event relay took it; it applies it to its live frames and forwards it later."""
    QUEUED = "queued here"
    """Neither server could take it: it waits in the console's local queue."""
    REFUSED = "refused"
    """A server said no (``detail`` says why); it is not retried."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one attempt at a command."""

    action_id: str
    """The command."""
    delivery: Delivery
    """Where it ended up."""
    detail: str = ""
    """Why (for a refusal or a queued command), or the server that took it."""
    at_ms: int = 0
    """When the server recorded it, UTC ms, when it says (0: unknown)."""
