"""Live feeds of a race: the event relay's standings, or the cloud's stream scored here.

Both are :class:`Feed`\\ s: ``run()`` keeps the feed current until it ends or its server
drops (:class:`~console_tui.errors.Unreachable`), and ``view(now_ms)`` is the race as
of now. :func:`follow` runs them in order of preference and falls back to the next when
one drops, returning to the preferred one after ``fallback_s``.

* :class:`RelayFeed` polls the relay's ``/standings`` and ``/alerts`` (the relay scores
  every fix it has, so gaps are right from the first poll).
* :class:`CloudFeed` feeds a :class:`~sync_protocol.race.scoring.RaceScorer` from
  ``GET /api/races/{id}/live`` exactly as the relay does (``edge_relay/live.py``): every
  fix (``fixes`` rows and ``fix`` messages, in stream order, so passages in a catch-up
  after a gap are timed), trackers' battery levels, race states and actions. The
  stream's snapshot holds each rider's newest fix only, so a console that joins mid-race
  has positions at once and gaps once the leader's later fixes arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol

from sync_protocol.course import Course
from sync_protocol.errors import LocalProtocolError
from sync_protocol.race.scoring import RaceScorer

from .client import CloudClient, RelayClient
from .errors import Refused, SessionExpired, Unreachable
from .view import AlertRow, GroupRow, RaceView, RiderRow

__all__ = ["CloudFeed", "Feed", "RelayFeed", "follow"]

log = logging.getLogger(__name__)

STATE_OF = {"results_published": "published"}


class Feed(Protocol):
    """A source of the race's live view."""

    name: str
    """For people: "cloud", "relay finish-line"."""

    async def run(self, limit_s: float | None) -> None:
        """Keep the view current; return after ``limit_s`` (None: until the feed ends)."""
        ...

    def view(self, now_ms: int) -> RaceView | None:
        """The race as of ``now_ms`` (None before the first data)."""
        ...


class CloudFeed:
    """The race scored here from the cloud's live stream."""

    def __init__(
        self,
        cloud: CloudClient,
        race: Mapping[str, Any],
        start_list: Sequence[Mapping[str, Any]],
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cloud = cloud
        self.name = "cloud"
        self.race_id = int(race["id"])
        course = Course.from_dict(race["course"]) if race.get("course") else None
        state = str(race.get("state") or "scheduled")
        self.scorer = RaceScorer(
            self.race_id,
            course,
            {int(r["rider_id"]): (int(r["bib"]), str(r["name"])) for r in start_list},
            state=state,
            start_ms=int(race["starts_at_ms"]) if state != "scheduled" else None,
        )
        self.via: dict[int, int] = {}
        """Relay id each rider's newest fix came through (0: straight to the cloud)."""
        self.relay_names: dict[int, str] = {}
        """Relay names by id, for the link column (filled by the screen)."""
        self._on_message = on_message
        self._seen = False

    async def run(self, limit_s: float | None) -> None:
        """Follow the stream (reconnecting is the caller's: see :func:`follow`)."""
        async with asyncio.timeout(limit_s), aclosing(self.cloud.follow(self.race_id)) as lines:
            async for message in lines:
                self.apply(message)

    def apply(self, message: dict[str, Any]) -> bool:
        """One message of the stream; True when the view changed."""
        kind = message.get("type")
        try:
            if kind == "snapshot":
                self._seen = True
                changed = False
                if message.get("race"):
                    changed |= self._state(message["race"])
                for fix in message.get("riders") or ():
                    changed |= self._fix(fix)
                for action in message.get("actions") or ():
                    changed |= self.action(action)
                for battery in message.get("batteries") or ():
                    changed |= self._battery(battery)
                return changed
            if kind == "fix":
                return self._fix(message)
            if kind == "fixes":
                return self._fixes(message)
            if kind == "battery":
                return self._battery(message)
            if kind == "action":
                return self.action(message)
            if kind == "race":
                return self._state(message)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("bad live message from the cloud: %s", exc)
        return False

    def action(self, a: Mapping[str, Any]) -> bool:
        """An official action (from the stream or ``GET /actions``); counted once by id."""
        try:
            changed = self.scorer.on_action(
                str(a["kind"]),
                t_ms=int(a["t_ms"]),
                rider_id=None if a.get("rider_id") is None else int(a["rider_id"]),
                seconds=int(a.get("seconds") or 0),
                reason=str(a.get("reason") or ""),
                action_id=a.get("action_id"),
            )
        except LocalProtocolError as exc:
            log.info("action not applied: %s", exc.message)
            return False
        if changed and self._on_message is not None:
            self._on_message({"type": "action", **a})
        return changed

    def _fix(self, m: Mapping[str, Any]) -> bool:
        rider_id = int(m["rider_id"])
        progress = m.get("progress_m")
        try:
            self.scorer.on_fix(
                rider_id,
                int(m["t_ms"]),
                int(m["lat_e7"]),
                int(m["lon_e7"]),
                int(m.get("ele_dm") or 0),
                int(m.get("speed_cms") or 0),
                None if progress is None else float(progress),
            )
        except LocalProtocolError as exc:
            log.info("fix not scored: %s", exc.message)
            return False
        if m.get("via") is not None:
            self.via[rider_id] = int(m["via"])
        return True

    def _fixes(self, m: Mapping[str, Any]) -> bool:
        """Every fix one upload added for a rider, in order (rows of ``fields``)."""
        rider_id = int(m["rider_id"])
        fields = [str(f) for f in m["fields"]]
        changed = False
        for row in m["fixes"]:
            f = dict(zip(fields, row, strict=True))
            progress = f.get("progress_m")
            try:
                self.scorer.on_fix(
                    rider_id,
                    int(f["t_ms"]),
                    int(f["lat_e7"]),
                    int(f["lon_e7"]),
                    int(f.get("ele_dm") or 0),
                    int(f.get("speed_cms") or 0),
                    None if progress is None else float(progress),
                )
            except LocalProtocolError as exc:
                log.info("fix not scored: %s", exc.message)
                if exc.reason == "unknown-rider":
                    break  # so are the rest
                continue
            changed = True
        return changed  # ``via`` is the newest fix's: the ``fix`` message after these says

    def _battery(self, m: Mapping[str, Any]) -> bool:
        """A tracker's battery level (verified by the cloud or the relay that took it)."""
        try:
            return self.scorer.on_status(
                int(m["rider_id"]), int(m["t_ms"]), int(m["battery_pct"]), m["charging"]
            )
        except LocalProtocolError as exc:
            log.info("battery level not shown: %s", exc.message)
            return False

    def _state(self, m: Mapping[str, Any]) -> bool:
        try:
            t_ms = max(int(m.get("t_ms") or 0), 0)
            changed = self.scorer.on_race_state(str(m["state"]), t_ms=t_ms)
        except LocalProtocolError as exc:
            log.info("race state not applied: %s", exc.message)
            return False
        if changed and self._on_message is not None:
            self._on_message({"type": "race", **m})
        return changed

    def _via(self, rider_id: int) -> str:
        relay = self.via.get(rider_id)
        if relay is None:
            return ""
        return "direct" if relay == 0 else self.relay_names.get(relay, f"relay {relay}")

    def view(self, now_ms: int) -> RaceView | None:
        """The scorer's view at ``now_ms``."""
        if not self._seen:
            return None
        status = self.scorer.race_status.name.lower()
        return RaceView(
            STATE_OF.get(status, status),
            self.name,
            tuple(
                RiderRow.from_standing(s, self._via(s.rider_id))
                for s in self.scorer.standings(now_ms)
            ),
            tuple(GroupRow.from_group(g) for g in self.scorer.groups(now_ms)),
            tuple(AlertRow.from_alert(a) for a in self.scorer.alerts(now_ms)),
        )


class RelayFeed:
    """The event relay's own standings and alerts, polled."""

    def __init__(self, relay: RelayClient, race_id: int, poll_s: float = 1.0) -> None:
        self.relay = relay
        self.name = relay.name
        self.race_id = race_id
        self.poll_s = poll_s
        self._view: RaceView | None = None

    async def run(self, limit_s: float | None) -> None:
        """Poll until ``limit_s`` passes; Unreachable when the relay stops answering."""
        try:
            async with asyncio.timeout(limit_s):
                while True:
                    await self.poll()
                    await asyncio.sleep(self.poll_s)
        except TimeoutError:
            return

    async def poll(self) -> None:
        """Read the relay once."""
        standings, alerts = await asyncio.gather(
            self.relay.standings(self.race_id), self.relay.alerts(self.race_id)
        )
        try:
            self._view = RaceView.from_relay(self.name, standings, alerts)
        except (KeyError, TypeError, ValueError) as exc:
            why = f"{self.name} sent standings this console cannot read: {exc!r}"
            raise Unreachable(why) from None

    def view(self, now_ms: int) -> RaceView | None:
        """The last poll's view."""
        return self._view


async def follow(
    feeds: Sequence[Feed],
    on_source: Callable[[Feed | None, str], None],
    *,
    retry_s: float = 2.0,
    fallback_s: float = 15.0,
) -> None:
    """Run ``feeds`` in order of preference, forever (cancel to stop).

    ``on_source(feed, "")`` when a feed starts, ``on_source(None, reason)`` when one drops
    (or refuses: a relay that does not serve the race). A fallback feed runs for
    ``fallback_s`` before the preferred one is tried again. SessionExpired goes up.
    """
    while True:
        for index, feed in enumerate(feeds):
            on_source(feed, "")
            try:
                await feed.run(None if index == 0 else fallback_s)
            except SessionExpired:
                raise  # the official must log in again: not this loop's to fix
            except (Unreachable, Refused) as exc:  # down, or will not serve this race
                on_source(None, exc.message)
                continue
            except TimeoutError:
                pass  # a fallback's time is up
            break
        else:
            await asyncio.sleep(retry_s)
            continue
        await asyncio.sleep(0.2)  # a stream that ended: reconnect, gently
