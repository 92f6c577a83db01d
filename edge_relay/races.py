"""The races a relay serves, from the cloud's ``/api/relay/config`` document.

The document is saved in the relay's store each time it is downloaded, so after a restart
with no uplink the relay still knows its races, their courses, start lists, the officials'
actions so far, and the cloud's public key that signs device certificates.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sync_protocol.course import Course
from sync_protocol.errors import CourseError

log = logging.getLogger("gruppetto.relay.races")


class ConfigError(ValueError):
    """The cloud's configuration document is unusable."""


@dataclass(frozen=True, slots=True)
class Rider:
    """A rider on a start list."""

    rider_id: int
    """The racer's user id (the ``racer_id`` of their device certificate)."""
    bib: int
    """Race number."""
    name: str
    """Display name."""
    status: str = "registered"
    """Registration status (registered, dns, dnf, dsq ...)."""


@dataclass(frozen=True, slots=True)
class RaceInfo:
    """One served race."""

    race_id: int
    """Race id."""
    name: str
    """Race name."""
    state: str
    """scheduled, live, neutralised, finished or published."""
    starts_at_ms: int
    """Scheduled start, UTC ms."""
    course: Course | None
    """The course, once uploaded."""
    riders: dict[int, Rider] = field(default_factory=dict)
    """Start list by rider id."""
    actions: tuple[dict[str, Any], ...] = ()
    """Officials' actions so far, oldest first."""
    started_ms: int | None = None
    """When the race actually went live (None until it has)."""

    @property
    def start_ms(self) -> int:
        """What race times count from: the actual start, else the scheduled one."""
        return self.starts_at_ms if self.started_ms is None else self.started_ms


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the relay knows about its races."""

    relay_id: int
    """This relay's id in the cloud."""
    relay_name: str
    """This relay's name."""
    issuer: Ed25519PublicKey
    """The cloud's key that signs device certificates."""
    races: dict[int, RaceInfo]
    """Served races by id."""
    token_issuer: str | None = None
    """``iss`` of the cloud's access tokens (checked on officials' commands)."""

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> RelayConfig:
        """Parse the cloud's document; ConfigError when it is not one."""
        try:
            issuer = Ed25519PublicKey.from_public_bytes(
                base64.b64decode(doc["issuer_public_key"], validate=True)
            )
            races = {int(r["id"]): _race(r) for r in doc["races"]}
            token_issuer = doc.get("token_issuer")
            return cls(
                int(doc["relay"]["id"]),
                str(doc["relay"]["name"]),
                issuer,
                races,
                str(token_issuer) if token_issuer else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"the cloud's relay configuration is malformed: {exc}") from None

    @property
    def race_ids(self) -> frozenset[int]:
        """Ids of the served races."""
        return frozenset(self.races)

    def race_for(self, racer_id: int, race_ids: Iterable[int], t_ms: int) -> RaceInfo | None:
        """The served race a fix of ``racer_id`` belongs to.

        Among the races the certificate names and this relay serves, with the rider on the
        start list: a race under way first, else the one whose start is nearest ``t_ms``.
        """
        candidates = [
            self.races[r] for r in race_ids if r in self.races and racer_id in self.races[r].riders
        ]
        if not candidates:
            return None
        running = [r for r in candidates if r.state in ("live", "neutralised")]
        pool = running or candidates
        return min(pool, key=lambda r: (abs(r.starts_at_ms - t_ms), r.race_id))


def _race(r: dict[str, Any]) -> RaceInfo:
    course = None
    if r.get("course"):
        try:
            course = Course.from_dict(r["course"])
        except CourseError as exc:
            log.warning("race course unusable", extra={"race": r.get("id"), "detail": str(exc)})
    riders = {
        int(p["rider_id"]): Rider(
            int(p["rider_id"]), int(p["bib"]), str(p["name"]), str(p.get("status", "registered"))
        )
        for p in r.get("riders", [])
    }
    return RaceInfo(
        int(r["id"]),
        str(r["name"]),
        str(r["state"]),
        int(r["starts_at_ms"]),
        course,
        riders,
        tuple(r.get("actions", [])),
        None if r.get("started_ms") is None else int(r["started_ms"]),
    )
