"""What the console's screens are given: the clients, the queue, the clock, the pace.

Tests build one against real servers on loopback; ``gruppetto console`` builds one from
its options. The app owns it and closes it when it exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import CloudClient, ControlTarget, RelayClient
from .dispatch import Dispatcher
from .outbox import Outbox

__all__ = ["Services", "wall_ms"]


def wall_ms() -> int:
    """Now, UTC ms."""
    return time.time_ns() // 1_000_000


@dataclass
class Services:
    """The console's connections and settings."""

    cloud: CloudClient
    """The cloud (login, races, the system of record)."""
    outbox: Outbox
    """The local queue."""
    relay: RelayClient | None = None
    """The event relay, when one is known."""
    clock: Callable[[], int] = wall_ms
    """UTC ms."""
    retry_s: float = 5.0
    """How often the local queue is tried again."""
    poll_s: float = 1.0
    """How often the relay's standings are read."""
    tick_s: float = 1.0
    """How often the board is redrawn (fix ages move on by themselves)."""
    refresh_s: float = 5.0
    """How often relays and the action list are read again."""
    fallback_s: float = 15.0
    """How long a fallback feed runs before the preferred one is tried again."""
    dispatcher: Dispatcher = field(init=False)
    """Sends commands: the cloud, else the relay, else the queue."""

    def __post_init__(self) -> None:
        targets: list[ControlTarget] = [self.cloud]
        if self.relay is not None:
            targets.append(self.relay)
        self.dispatcher = Dispatcher(targets, self.outbox, self.clock)

    def where(self) -> str:
        """The servers, for people."""
        text = f"cloud {self.cloud.url}"
        if self.relay is not None:
            text += f" · event relay {self.relay.name} at {self.relay.url}"
        return text

    async def aclose(self) -> None:
        """Close the connections and release the data directory."""
        await self.cloud.aclose()
        if self.relay is not None:
            await self.relay.aclose()
        self.outbox.close()
