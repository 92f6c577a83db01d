"""The live bus: every accepted fix, trackers' battery levels and every official action, per
race, to subscribers.

``LiveBus`` is the interface (publish from any thread, subscribe from the event loop);
:class:`InProcessBus` is the one-machine implementation. A NATS implementation publishes
the same messages on ``gruppetto.race.<id>`` subjects and keeps the same snapshot-first
contract. A subscriber first gets the race's current state (each rider's latest position
and battery level, the race status, the official actions so far), then the stream. One
that cannot keep up is dropped with a final ``resync`` message: it reconnects and starts
from a fresh snapshot, so a slow relay never grows the cloud's memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .history.store import History
    from .store.actions import ActionStore
    from .store.races import RaceStore

Message = dict[str, Any]

QUEUE_LIMIT = 2_000
"""Messages a subscriber may fall behind before it is told to resync."""


class LiveBus(Protocol):
    """What the cloud needs from a live bus."""

    def publish(self, race_id: int, message: Message) -> None:
        """Publish from any thread; ``message["type"]`` is ``fix``, ``battery``, ``race`` or
        ``action``."""

    def subscribe(self, race_id: int) -> AsyncIterator[Message]:
        """The race's snapshot, then its messages as they are published."""


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Message | None]
    dropped: bool = False


@dataclass
class _RaceState:
    riders: dict[int, Message] = field(default_factory=dict)
    batteries: dict[int, Message] = field(default_factory=dict)
    race: Message | None = None
    actions: list[Message] = field(default_factory=list)
    subscribers: list[_Subscriber] = field(default_factory=list)


class InProcessBus:
    """The one-process live bus (the embedded default)."""

    def __init__(self) -> None:
        self._races: dict[int, _RaceState] = {}
        self._lock = threading.Lock()

    def publish(self, race_id: int, message: Message) -> None:
        """Fold ``message`` into the race's state and hand it to every subscriber."""
        with self._lock:
            state = self._races.setdefault(race_id, _RaceState())
            kind = message.get("type")
            if kind == "fix":
                rider = message["rider_id"]
                current = state.riders.get(rider)
                if current is not None and current["seq"] >= message["seq"]:
                    return  # an older fix (backfill) is history, not live news
                state.riders[rider] = message
            elif kind == "battery":
                rider = message["rider_id"]
                current = state.batteries.get(rider)
                if current is not None and current["t_ms"] >= message["t_ms"]:
                    return  # an older level (another relay's report) is no news
                state.batteries[rider] = message
            elif kind == "race":
                state.race = message
            elif kind == "action":
                state.actions.append(message)
            subscribers = list(state.subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(self._deliver, race_id, sub, message)

    def _deliver(self, race_id: int, sub: _Subscriber, message: Message) -> None:
        if sub.dropped:
            return
        if sub.queue.qsize() >= QUEUE_LIMIT:
            sub.dropped = True
            self._remove(race_id, sub)
            sub.queue.put_nowait({"type": "resync", "reason": "subscriber too slow"})
            sub.queue.put_nowait(None)
            return
        sub.queue.put_nowait(message)

    def _remove(self, race_id: int, sub: _Subscriber) -> None:
        with self._lock:
            state = self._races.get(race_id)
            if state is not None and sub in state.subscribers:
                state.subscribers.remove(sub)

    def snapshot(self, race_id: int) -> Message:
        """The race's current state."""
        with self._lock:
            state = self._races.get(race_id) or _RaceState()
            return {
                "type": "snapshot",
                "race_id": race_id,
                "race": state.race,
                "riders": sorted(state.riders.values(), key=lambda m: m["bib"]),
                "batteries": sorted(state.batteries.values(), key=lambda m: m["bib"]),
                "actions": list(state.actions),
            }

    async def subscribe(self, race_id: int) -> AsyncIterator[Message]:
        """Snapshot first, then the stream, until the caller stops iterating."""
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._races.setdefault(race_id, _RaceState()).subscribers.append(sub)
        try:
            yield self.snapshot(race_id)
            while True:
                message = await sub.queue.get()
                if message is None:
                    return
                yield message
        finally:
            self._remove(race_id, sub)

    def subscriber_count(self, race_id: int) -> int:
        """How many subscribers a race has (metrics, tests)."""
        with self._lock:
            state = self._races.get(race_id)
            return len(state.subscribers) if state else 0


def seed_from_history(
    bus: LiveBus, races: RaceStore, actions: ActionStore, history: History
) -> None:
    """After a restart, put each live race's state back on the bus: its status, the
    official actions so far and each rider's latest position (batteries are not stored)."""
    for race in races.overview():
        if race["state"] not in ("live", "neutralised"):
            continue
        bibs = {r["rider_id"]: r["bib"] for r in races.start_list(race["id"])}
        bus.publish(race["id"], {"type": "race", "race_id": race["id"], "state": race["state"]})
        for action in actions.of_race(race["id"]):
            bib = bibs.get(action["rider_id"], 0)
            bus.publish(race["id"], {"type": "action", **action, "bib": bib})
        for rider_id, (fix, progress) in history.last_fixes(race["id"]).items():
            bus.publish(
                race["id"],
                {
                    "type": "fix",
                    "race_id": race["id"],
                    "rider_id": rider_id,
                    "bib": bibs.get(rider_id, 0),
                    "seq": fix.seq,
                    "t_ms": fix.t_ms,
                    "lat_e7": fix.lat_e7,
                    "lon_e7": fix.lon_e7,
                    "ele_dm": fix.ele_dm,
                    "speed_cms": fix.speed_cms,
                    "heading_dd": fix.heading_dd,
                    "progress_m": progress,
                },
            )
