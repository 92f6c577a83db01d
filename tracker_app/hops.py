"""Where the tracker uploads: relays (configured or discovered) and the cloud, in order.

A :class:`HopList` puts relays given by hand first, then relays found with zeroconf that
serve the race (each pinned to the certificate hash it advertises), then the cloud's
HTTP/3 endpoint. :class:`Backoff` spaces the attempts on a hop that keeps failing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sync_protocol.discovery import RelayAdvert

from .h3client import Endpoint


class Link(StrEnum):
    """Where uploads go right now."""

    OFFLINE = "offline"
    RELAY = "relay"
    CLOUD = "cloud"


@dataclass(frozen=True, slots=True)
class Hop:
    """A receiving hop: a relay or the cloud."""

    kind: Link
    """RELAY or CLOUD."""
    name: str
    """For people: the relay's advertised name, or the cloud's host."""
    endpoint: Endpoint
    """Where and how to connect."""

    @classmethod
    def from_advert(cls, advert: RelayAdvert) -> Hop:
        """A relay found on the network, pinned to its advertised certificate."""
        pin = bytes.fromhex(advert.cert_sha256) if advert.cert_sha256 else None
        endpoint = Endpoint(advert.addresses[0], advert.quic_port, pin_sha256=pin)
        return cls(Link.RELAY, advert.name, endpoint)


class HopList:
    """Hops in preference order: configured relays, discovered relays, then the cloud."""

    def __init__(
        self,
        *,
        relays: Sequence[Hop] = (),
        cloud: Hop | None = None,
        adverts: Callable[[], Sequence[RelayAdvert]] | None = None,
        race_id: int | None = None,
    ) -> None:
        self.relays = list(relays)
        """Relays configured by hand (``--relay``)."""
        self.cloud = cloud
        """The cloud's HTTP/3 endpoint, if it has one."""
        self._adverts = adverts
        self._race_id = race_id

    def hops(self) -> list[Hop]:
        """The current list, best first."""
        found = [
            Hop.from_advert(a)
            for a in (self._adverts() if self._adverts else ())
            if a.serves(self._race_id)
        ]
        listed = [*self.relays, *found]
        unique: dict[tuple[str, int], Hop] = {}
        for hop in listed:  # a discovered relay also given by hand: the hand-given one
            unique.setdefault((hop.endpoint.host, hop.endpoint.port), hop)
        return [*unique.values(), *([self.cloud] if self.cloud else [])]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between attempts on a failing hop."""

    base_s: float = 1.0
    """The first delay."""
    max_s: float = 60.0
    """The longest delay."""

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` consecutive failures (half to all of it)."""
        full = min(self.max_s, self.base_s * 2.0 ** min(30, max(0, failures - 1)))
        return full * (0.5 + rng.random() / 2)


def wall_ms() -> int:
    """UTC milliseconds (hello timestamps and the sender's retry timers)."""
    return time.time_ns() // 1_000_000
