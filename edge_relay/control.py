"""Race control through the event relay, for when the cloud is out of reach.

Officials send the relay the same requests they send the cloud — ``POST
/api/races/{id}/actions`` and ``POST /api/races/{id}/state`` — with their cloud access
token. The relay checks the token offline against the cloud's published keys (JWKS,
saved with the configuration), records the command durably under its ``action_id``,
applies it to its live frames at once, and forwards it to the cloud exactly once: the
cloud's race control is idempotent by ``action_id``, and a replayed state change the
cloud has already passed is settled as done.

Access tokens live minutes; an official who logged in before the uplink dropped must
keep working, so a token whose signature, issuer, audience and role check out is accepted
up to :data:`OFFLINE_GRACE_S` past its expiry (documented in docs/relay.md).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from .races import RelayConfig

OFFLINE_GRACE_S = 12 * 3_600
"""How long past its expiry an official's token is still honoured by the relay."""
AUDIENCE = "gruppetto"
STAFF = frozenset({"admin", "official"})
ACTION_KINDS = frozenset({"penalty", "dnf", "dns", "dsq", "reinstate"})
STATES = frozenset({"live", "neutralised", "finished", "published"})
ACTION_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


class ControlError(Exception):
    """A refused command: HTTP status, machine reason, message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True, slots=True)
class Official:
    """Who sent a command (from their verified token)."""

    id: int
    """User id."""
    name: str
    """User name."""
    role: str
    """admin or official."""


@dataclass(frozen=True, slots=True)
class Command:
    """A race-control command queued on the relay."""

    action_id: str
    """The client's idempotency key."""
    race_id: int
    """The race."""
    kind: str
    """``action`` (a rider action) or ``state`` (a race state change)."""
    body: dict[str, Any]
    """What the official sent (with ``action_id``)."""
    official: Official
    """Who sent it."""
    t_ms: int
    """When the relay received it."""

    @property
    def path(self) -> str:
        """The cloud endpoint it goes to."""
        suffix = "actions" if self.kind == "action" else "state"
        return f"/api/races/{self.race_id}/{suffix}"

    def to_row(self) -> tuple[str, int, str, str, str, int]:
        """Columns of the ``control`` table."""
        who = {"id": self.official.id, "name": self.official.name, "role": self.official.role}
        return (
            self.action_id,
            self.race_id,
            self.kind,
            json.dumps(self.body),
            json.dumps(who),
            self.t_ms,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Command:
        """Rebuild from the ``control`` table."""
        action_id, race_id, kind, body, who, t_ms = row
        w = json.loads(who)
        return cls(
            action_id,
            race_id,
            kind,
            json.loads(body),
            Official(w["id"], w["name"], w["role"]),
            t_ms,
        )


def verify_official(
    token: str, jwks: dict[str, Any] | None, issuer: str | None, now_s: float
) -> Official:
    """Check a cloud access token offline; ControlError 401/403 when it will not do."""
    if not jwks:
        raise ControlError(
            503, "no-keys", "this relay has not fetched the cloud's keys yet: try the cloud"
        )
    try:
        header = jwt.get_unverified_header(token)
        keys = {k.get("kid"): k for k in jwks.get("keys", [])}
        key = keys.get(header.get("kid")) or next(iter(keys.values()))
        claims = jwt.decode(
            token,
            jwt.PyJWK(key).key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=issuer,
            options={
                "require": ["exp", "sub", "role", "name", "iss"],
                "verify_exp": False,
                "verify_iss": issuer is not None,
            },
        )
    except (jwt.PyJWTError, StopIteration, ValueError, TypeError) as exc:
        raise ControlError(401, "invalid-token", f"the access token is not valid: {exc}") from None
    if float(claims["exp"]) + OFFLINE_GRACE_S < now_s:
        raise ControlError(401, "token-expired", "the access token expired: log in again")
    if claims.get("role") not in STAFF:
        raise ControlError(403, "forbidden", "race control is for officials and admins")
    return Official(int(claims["sub"]), str(claims["name"]), str(claims["role"]))


def command(
    config: RelayConfig, race_id: int, kind: str, body: Any, official: Official, now_ms: int
) -> Command:
    """Validate a command against the relay's race configuration."""
    if race_id not in config.races:
        raise ControlError(404, "not-found", f"this relay does not serve race {race_id}")
    if not isinstance(body, dict):
        raise ControlError(400, "bad-request", "the body must be a JSON object")
    action_id = body.get("action_id") or str(uuid.uuid4())
    if not isinstance(action_id, str) or not ACTION_ID.match(action_id):
        raise ControlError(400, "bad-request", "action_id must be 8-64 letters, digits or dashes")
    race = config.races[race_id]
    if kind == "action":
        if body.get("kind") not in ACTION_KINDS:
            raise ControlError(400, "bad-request", f"kind must be one of {sorted(ACTION_KINDS)}")
        rider = body.get("rider_id")
        if not isinstance(rider, int) or rider not in race.riders:
            raise ControlError(400, "bad-request", f"rider {rider} is not in race {race_id}")
        if body["kind"] == "penalty" and not (
            isinstance(body.get("seconds"), int) and body["seconds"] != 0 and body.get("reason")
        ):
            raise ControlError(400, "bad-request", "a penalty needs non-zero seconds and a reason")
    elif body.get("state") not in STATES:
        raise ControlError(400, "bad-request", f"state must be one of {sorted(STATES)}")
    return Command(action_id, race_id, kind, {**body, "action_id": action_id}, official, now_ms)


def live_message(cmd: Command) -> dict[str, Any]:
    """The command as a message of the cloud's live stream (for the relay's own scoring)."""
    if cmd.kind == "state":
        return {
            "type": "race",
            "race_id": cmd.race_id,
            "state": cmd.body["state"],
            "t_ms": cmd.t_ms,
        }
    return {
        "type": "action",
        "action_id": cmd.action_id,
        "kind": cmd.body["kind"],
        "rider_id": cmd.body["rider_id"],
        "seconds": int(cmd.body.get("seconds") or 0),
        "reason": str(cmd.body.get("reason") or ""),
        "t_ms": cmd.t_ms,
    }
