"""The live bus: every accepted fix, trackers' battery levels and every official action, per
race, to subscribers.

``LiveBus`` is the interface (publish from any thread, subscribe from the event loop);
:class:`InProcessBus` is the one-machine implementation. A NATS implementation publishes
the same messages on ``gruppetto.race.<id>`` subjects and keeps the same snapshot-first
contract. A subscriber first gets the race's current state (each rider's latest position
and battery level, the race status, the official actions so far), then the stream. One
that cannot keep up is dropped with a final ``resync`` message: it reconnects and starts
from a fresh snapshot, so a slow relay never grows the cloud's memory.

Fixes are published as one ``fixes`` message per upload and rider's device: every fix
the upload added, in order, as compact rows (``fields`` names the columns). Subscribers
get each accepted fix exactly once: the fixes of the upload before the rider's new newest
one go out in ``fixes`` messages of at most :data:`FIXES_PER_MESSAGE` rows, and the new
newest one (when it is newer than the rider's last) as a ``fix`` message, which also goes
into the snapshot. A live one-fix upload is thus one ``fix`` message, a catch-up of an
hour a handful of messages whatever its length, and a backfill older than the rider's
last fix only ``fixes``. Consumers that score passages feed both to the race model in
stream order; consumers that only want positions read ``fix`` alone.
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
FIX_FIELDS = (
    "seq",
    "t_ms",
    "lat_e7",
    "lon_e7",
    "ele_dm",
    "speed_cms",
    "heading_dd",
    "progress_m",
)
"""The columns of a ``fixes`` message's rows, in order (its ``fields``)."""
FIX_HEADER = ("race_id", "rider_id", "bib", "device_id", "via")
"""What a ``fixes`` message says once for all its rows (and a ``fix`` message also has)."""
FIXES_PER_MESSAGE = 1_000
"""Most rows in one delivered ``fixes`` message (a long catch-up is a few messages)."""


class LiveBus(Protocol):
    """What the cloud needs from a live bus."""

    def publish(self, race_id: int, message: Message) -> None:
        """Publish from any thread; ``message["type"]`` is ``fixes`` (every fix an upload
        added for one rider's device, see :func:`fixes_message`), ``fix`` (one fix, as
        :func:`fix_record` makes it), ``battery``, ``race`` or ``action``."""

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
            out = [message]
            if kind in ("fix", "fixes"):
                out = _fold_fixes(state, message)
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
        if not out:
            return
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(self._deliver, race_id, sub, out)

    def _deliver(self, race_id: int, sub: _Subscriber, messages: list[Message]) -> None:
        for message in messages:
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


def fixes_message(header: Message, rows: list[list[Any]]) -> Message:
    """A ``fixes`` message: ``header`` (:data:`FIX_HEADER`) and rows of :data:`FIX_FIELDS`."""
    return {"type": "fixes", **header, "fields": list(FIX_FIELDS), "fixes": rows}


def fix_record(header: Message, row: list[Any], fields: list[str] | tuple[str, ...]) -> Message:
    """One row of a ``fixes`` message as a ``fix`` message (what the snapshot holds)."""
    return {"type": "fix", **header, **dict(zip(fields, row, strict=True))}


def _fold_fixes(state: _RaceState, message: Message) -> list[Message]:
    """Fold a ``fix`` or ``fixes`` message into the snapshot; what subscribers get of it.

    The rows before the rider's new newest fix go out as ``fixes`` (chunked), the new
    newest one as ``fix``; a fix no newer than the rider's last is history: ``fixes`` only.
    """
    header = {k: message[k] for k in FIX_HEADER if k in message}
    if message["type"] == "fix":
        fields: list[str] | tuple[str, ...] = FIX_FIELDS
        rows = [[message.get(f) for f in FIX_FIELDS]]
    else:
        fields, rows = message["fields"], message["fixes"]
    if not rows:
        return []
    rider = header["rider_id"]
    newest = fix_record(header, rows[-1], fields)
    current = state.riders.get(rider)
    history = rows
    if current is None or newest["t_ms"] > current["t_ms"]:
        state.riders[rider] = newest
        history = rows[:-1]
    out = [
        {
            "type": "fixes",
            **header,
            "fields": list(fields),
            "fixes": history[i : i + FIXES_PER_MESSAGE],
        }
        for i in range(0, len(history), FIXES_PER_MESSAGE)
    ]
    if history is not rows:
        out.append(newest)
    return out


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
