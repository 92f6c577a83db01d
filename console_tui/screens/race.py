"""The race: leaderboard, groups, alerts, relays, race control, the action log and queue."""

from __future__ import annotations

import dataclasses
from contextlib import suppress
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from ..commands import FROM_STATES, RACE_COMMANDS, Command, Delivery, Receipt, label
from ..dispatch import Settled
from ..errors import ConsoleError, Refused, SessionExpired, Unreachable
from ..feed import CloudFeed, Feed, RelayFeed, follow
from ..services import Services
from ..view import RaceView
from ..widgets import (
    ActionLog,
    AlertsTable,
    GroupsTable,
    Leaderboard,
    LogEntry,
    QueueStatus,
    RelayRow,
    RelaysTable,
    clock_text,
)
from .modals import ConfirmScreen, RiderActionScreen

__all__ = ["RaceScreen", "outcome"]


def outcome(receipt: Receipt) -> str:
    """A receipt for the log's Outcome column."""
    if receipt.delivery is Delivery.CLOUD:
        return "recorded by the cloud"
    if receipt.delivery is Delivery.RELAY:
        return f"queued on {receipt.detail} (it forwards it to the cloud)"
    if receipt.delivery is Delivery.QUEUED:
        return "queued here (retrying)"
    return f"{receipt.delivery.value}: {receipt.detail}"


class RaceScreen(Screen[None]):
    """One race under the official's control."""

    BINDINGS = [  # noqa: RUF012 (Textual's class attribute)
        Binding("p", "rider('penalty')", "Penalty"),
        Binding("f", "rider('dnf')", "DNF"),
        Binding("s", "rider('dns')", "DNS"),
        Binding("x", "rider('dsq')", "DSQ"),
        Binding("i", "rider('reinstate')", "Reinstate"),
        Binding("S", "race('start')", "Start"),
        Binding("N", "race('neutralise')", "Neutralise"),
        Binding("R", "race('resume')", "Resume"),
        Binding("F", "race('finish')", "Finish"),
        Binding("P", "race('publish')", "Publish"),
        Binding("g", "races", "Races"),
    ]

    class SessionEnded(Message):
        """The login ended (the cloud revoked it): the official must log in again."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    view: var[RaceView | None] = var(None)
    """The race as shown now."""
    source: var[str] = var("connecting…")
    """Where the board comes from, or why it does not."""
    links: var[tuple[str, str]] = var(("cloud ?", ""))
    """The cloud's and the relay's reachability, for the race bar."""

    def __init__(self, services: Services, race: dict[str, Any], official: str) -> None:
        super().__init__()
        self.services = services
        self.race = race
        self.race_id = int(race["id"])
        self.official = official
        self.riders: dict[int, tuple[int, str]] = {}
        self.feeds: list[Feed] = []
        self.cloud_feed: CloudFeed | None = None
        self._shown: Feed | None = None
        self._cloud_relays: list[dict[str, Any]] = []
        self._event_relay: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="race-bar")
        with Horizontal(id="main"):
            with Vertical(id="board-pane"):
                yield Label("Leaderboard", classes="panel-title")
                yield Leaderboard(id="board")
            with Vertical(id="side"):
                yield Label("Groups", classes="panel-title")
                yield GroupsTable(id="groups")
                yield Label("Alerts", classes="panel-title")
                yield AlertsTable(id="alerts")
                yield Label("Relays", classes="panel-title")
                yield RelaysTable(id="relays")
        with Vertical(id="bottom"):
            yield Label("Action log", classes="panel-title")
            yield ActionLog(id="log")
            yield QueueStatus(id="queue")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Leaderboard).focus()
        self.query_one(QueueStatus).entries = self.services.outbox.entries
        self._bar()
        self.start()
        self.set_interval(self.services.tick_s, self.tick)
        self.set_interval(self.services.refresh_s, self.refresh_side)

    # -- data ----------------------------------------------------------------------

    @work(exclusive=True, group="start")
    async def start(self) -> None:
        """Read the race and its start list, then follow it live."""
        cloud = self.services.cloud
        try:
            race = await cloud.get_json(f"/api/races/{self.race_id}")
            start_list = await cloud.get_json(f"/api/races/{self.race_id}/riders")
        except SessionExpired as exc:
            self.post_message(self.SessionEnded(exc.message))
            return
        except ConsoleError as exc:
            self.source = f"cannot read the race: {exc.message}"
            race, start_list = self.race, []
        self.race = {**self.race, **race}
        self.riders = {int(r["rider_id"]): (int(r["bib"]), str(r["name"])) for r in start_list}
        self.cloud_feed = CloudFeed(cloud, self.race, start_list, self._cloud_message)
        if self.services.relay is not None:
            self.feeds.append(RelayFeed(self.services.relay, self.race_id, self.services.poll_s))
        self.feeds.append(self.cloud_feed)
        self.refresh_side()
        self.follow_feeds()

    @work(exclusive=True, group="feed")
    async def follow_feeds(self) -> None:
        """Keep the board live, falling back from one feed to the other."""
        try:
            await follow(self.feeds, self._on_source, fallback_s=self.services.fallback_s)
        except SessionExpired as exc:
            self.post_message(self.SessionEnded(exc.message))

    def _on_source(self, feed: Feed | None, reason: str) -> None:
        if feed is None:
            self.source = "board stale (no answer)"  # the links say which server is down
            self.log.warning(f"live feed dropped: {reason}")
            return
        self._shown = feed
        self.source = f"board from {feed.name}"

    def _cloud_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "action":
            self._log_recorded(message)

    def tick(self) -> None:
        """Recompute the view (fix ages move on even when nothing arrives)."""
        if self._shown is not None:
            self.view = self._shown.view(self.services.clock())
        self.query_one(QueueStatus).entries = self.services.outbox.entries
        self._bar()

    def watch_view(self, view: RaceView | None) -> None:
        if view is None:
            return
        self.query_one(Leaderboard).show(view.riders)
        self.query_one(GroupsTable).show(view.groups)
        self.query_one(AlertsTable).show(view.alerts)

    def watch_source(self) -> None:
        self._bar()

    def watch_links(self) -> None:
        self._bar()

    def _bar(self) -> None:
        state = self.view.state if self.view is not None else str(self.race.get("state"))
        cloud, relay = self.links
        parts = [
            f"[b]{escape(str(self.race.get('name', '')))}[/b] (race {self.race_id})",
            f"[b]{state.upper()}[/b]",
            escape(self.source),
            cloud,
            relay,
            escape(self.official),
            clock_text(self.services.clock()),
        ]
        with suppress(NoMatches):
            self.query_one("#race-bar", Static).update(" · ".join(p for p in parts if p))

    @work(exclusive=True, group="side")
    async def refresh_side(self) -> None:
        """Relays (cloud list and the event relay's info) and the cloud's action list."""
        cloud, relay = self.services.cloud, self.services.relay
        cloud_text, relay_text = self.links
        try:
            self._cloud_relays = await cloud.get_json("/api/relays")
            actions = await cloud.get_json(f"/api/races/{self.race_id}/actions")
            cloud_text = "cloud up"
        except SessionExpired as exc:
            self.post_message(self.SessionEnded(exc.message))
            return
        except Unreachable:
            actions, cloud_text = [], "[red]cloud unreachable[/red]"
        except Refused as exc:
            actions, cloud_text = [], f"[red]cloud refused ({exc.status})[/red]"
        if relay is not None:
            try:
                self._event_relay = await relay.info()
                uplink = escape(str(self._event_relay.get("uplink")))
                relay_text = f"{escape(relay.name)} up (uplink {uplink})"
            except ConsoleError:
                relay_text = f"[red]{escape(relay.name)} unreachable[/red]"
        if self.cloud_feed is not None:
            self.cloud_feed.relay_names = {int(r["id"]): str(r["name"]) for r in self._cloud_relays}
            for action in actions:
                self.cloud_feed.action(action)
        rows = RelayRow.merge(self._cloud_relays, self._event_relay, self.race_id)
        with suppress(NoMatches):  # the app may have begun to close while we were reading
            self.links = (cloud_text, relay_text)
            for action in actions:
                self._log_recorded(action)
            self.query_one(RelaysTable).show(rows)

    def _log_recorded(self, action: dict[str, Any]) -> None:
        """An action the cloud has recorded (from its list or its live stream)."""
        rider = action.get("rider_id")
        bib, name = self.riders.get(int(rider), (None, "")) if rider is not None else (None, "")
        try:
            command = Command(
                str(action["action_id"]),
                self.race_id,
                str(action["kind"]),
                str(action.get("actor") or "?"),
                int(action.get("t_ms") or 0),
                rider_id=None if rider is None else int(rider),
                bib=bib,
                name=name,
                seconds=int(action.get("seconds") or 0),
                reason=str(action.get("reason") or "---"),
            )
        except (ConsoleError, KeyError, TypeError, ValueError):
            return
        self._log(command, "recorded by the cloud")

    def _log(self, command: Command, text: str) -> None:
        entry = LogEntry(
            command.action_id, command.decided_ms, command.official, command.describe(), text
        )
        with suppress(NoMatches):  # a feed's message while the app closes
            self.query_one(ActionLog).record(entry)

    # -- race control ---------------------------------------------------------------

    def action_rider(self, kind: str) -> None:
        """A rider action on the rider under the cursor."""
        rider_id = self.query_one(Leaderboard).selected_rider
        if rider_id is None:
            self.app.notify("Pick a rider on the leaderboard first.", severity="warning")
            return
        self.decide(kind, rider_id)

    def action_race(self, kind: str) -> None:
        """A race command, when the race's state allows it."""
        state = self.view.state if self.view is not None else str(self.race.get("state"))
        if state not in FROM_STATES[kind]:
            allowed = [k for k, states in FROM_STATES.items() if state in states]
            self.app.notify(
                f"The race is {state}: it cannot {kind} now"
                + (f" (it can {', '.join(allowed)})." if allowed else "."),
                severity="warning",
            )
            return
        self.decide(kind, None)

    def action_races(self) -> None:
        """Back to the list of races."""
        self.app.pop_screen()

    @work(group="control")
    async def decide(self, kind: str, rider_id: int | None) -> None:
        """Ask, confirm, send, log: one official decision."""
        clock, fields = self.services.clock, {}
        if rider_id is not None:
            bib, name = self.riders.get(rider_id, (0, ""))
            row = self.view.rider(rider_id) if self.view is not None else None
            if row is not None:
                bib, name = row.bib, row.name
            form = await self.app.push_screen_wait(RiderActionScreen(kind, f"#{bib} {name}"))
            if form is None:
                return
            fields = {
                "rider_id": rider_id,
                "bib": bib,
                "name": name,
                "seconds": form.seconds,
                "reason": form.reason,
            }
        try:
            draft = Command.new(self.race_id, kind, self.official, clock(), **fields)
        except ConsoleError as exc:
            self.app.notify(exc.message, severity="error")
            return
        title = f"Confirm: {kind} the race" if kind in RACE_COMMANDS else f"Confirm: {label(kind)}"
        who = (
            f"Recorded as {self.official} at {clock_text(clock())} · "
            f"action id {draft.action_id[:8]}…"
        )
        if not await self.app.push_screen_wait(ConfirmScreen(title, draft.describe(), who)):
            self.app.notify("Cancelled: nothing was sent.")
            return
        command = dataclasses.replace(draft, decided_ms=clock())
        self._log(command, "sending…")
        settled = await self.services.dispatcher.submit(command)
        with suppress(NoMatches):  # the app may be closing while we were sending
            self.show_settled(settled)
        if self.services.cloud.session is None:
            self.post_message(self.SessionEnded("the login ended: log in again"))

    def show_settled(self, settled: list[Settled], note: str = "") -> None:
        """What became of commands: in the log (this race's), and refusals said aloud."""
        for command, receipt in settled:
            if command.race_id == self.race_id:
                self._log(command, outcome(receipt) + note)
            if receipt.delivery is Delivery.REFUSED:
                self.app.notify(receipt.detail, title="Refused", severity="error")
        self.query_one(QueueStatus).entries = self.services.outbox.entries
