"""The race screen's panels: leaderboard, groups, alerts, relays, action log, queue."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist

from . import view as fmt
from .outbox import Queued
from .view import AlertRow, GroupRow, RiderRow

__all__ = [
    "ActionLog",
    "AlertsTable",
    "GroupsTable",
    "Leaderboard",
    "LogEntry",
    "QueueStatus",
    "RelayRow",
    "RelaysTable",
    "clock_text",
]

STATUS_STYLE = {
    "racing": "green",
    "finished": "bold cyan",
    "stopped": "yellow",
    "no signal": "red",
    "dnf": "bold red",
    "dns": "bold red",
    "dsq": "bold magenta",
}
LINK_STYLE = {"live": "green", "late": "yellow", "lost": "bold red", "none": "dim"}
UPLINK_STYLE = {"up": "green", "down": "bold red"}


def clock_text(ms: int) -> str:
    """UTC ms as local wall-clock time, HH:MM:SS."""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


class _Table(DataTable[Any]):
    """A read-only table that keeps its cursor on the same row key across refreshes."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def on_mount(self) -> None:
        self.make_columns()

    def make_columns(self) -> None:
        """Add the columns (Textual calls every class's ``on_mount``: override this)."""
        self.add_columns(*self.COLUMNS)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def replace(self, rows: Iterable[tuple[str, Sequence[object]]]) -> None:
        """Show ``rows`` (key, cells), keeping the cursor on the same key when it is there.

        Nothing is redrawn when the rows read the same as before.
        """
        rows = list(rows)
        shown = tuple((key, tuple(str(c) for c in cells)) for key, cells in rows)
        if shown == self._shown:
            return
        self._shown = shown
        keep = self.selected_key
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)


class Leaderboard(_Table):
    """Position, bib, name, gap, speed, distance to go, last fix, link, battery, status."""

    COLUMNS = (
        "Pos",
        "Bib",
        "Rider",
        "Gap",
        "km/h",
        "To go km",
        "Fix",
        "Link",
        "Batt",
        "Status",
        "Pen",
    )

    @property
    def selected_rider(self) -> int | None:
        """The rider under the cursor."""
        key = self.selected_key
        return None if key is None else int(key)

    def show(self, riders: Sequence[RiderRow]) -> None:
        """Show the leaderboard."""
        self.replace((str(r.rider_id), _rider_cells(r)) for r in riders)


def _battery_style(r: RiderRow) -> str:
    if r.battery_pct is None:
        return "dim"
    if r.charging:
        return "green"
    return "bold yellow" if r.battery_pct < fmt.LOW_BATTERY_PCT else ""


def _rider_cells(r: RiderRow) -> tuple[object, ...]:
    link = r.link
    return (
        str(r.position),
        str(r.bib),
        Text(r.name),
        fmt.gap(r.gap_ms),
        fmt.speed(r.speed_cms),
        fmt.distance(r.to_go_m),
        fmt.age(r.age_ms),
        Text(link, style=LINK_STYLE.get(link.split()[0], "")),
        Text(fmt.battery(r.battery_pct, r.charging), style=_battery_style(r)),
        Text(r.status, style=STATUS_STYLE.get(r.status, "")),
        f"+{r.penalty_s} s" if r.penalty_s else "",
    )


class GroupsTable(_Table):
    """Groups on the road with their time gaps."""

    COLUMNS = ("Group", "Riders", "Gap")

    def show(self, groups: Sequence[GroupRow]) -> None:
        """Show the groups, front first."""
        rows = []
        for g in groups:
            bibs = " ".join(f"#{b}" for b in g.bibs[:8]) + (" …" if len(g.bibs) > 8 else "")
            rows.append((str(g.index), (g.role, f"{len(g.bibs)}: {bibs}", fmt.gap(g.gap_ms))))
        self.replace(rows)


class AlertsTable(_Table):
    """Stopped, silent, off-course riders and missed checkpoints."""

    COLUMNS = ("Alert", "Bib", "Since", "What")

    def show(self, alerts: Sequence[AlertRow]) -> None:
        """Show the alerts."""
        self.replace(
            (
                f"{a.kind}:{a.rider_id}:{a.detail if a.kind == 'missed-checkpoint' else ''}",
                (
                    Text(a.kind, style="bold yellow"),
                    f"#{a.bib}",
                    clock_text(a.since_ms),
                    Text(a.detail),
                ),
            )
            for a in alerts
        )


@dataclass(frozen=True, slots=True)
class RelayRow:
    """A relay as the console knows it: from the cloud's list and the event relay's info."""

    relay_id: int | None
    """The cloud's id of the relay (None: not known)."""
    name: str
    """Its name."""
    uplink: str = "—"
    """up or down (only the event relay says)."""
    trackers: str = "—"
    """Trackers admitted."""
    spectators: str = "—"
    """Spectators watching."""
    backlog: str = "—"
    """Fixes waiting to be forwarded to the cloud."""
    seen: str = "—"
    """When the cloud last heard from it."""

    @classmethod
    def merge(
        cls, cloud: Sequence[Mapping[str, Any]], event: Mapping[str, Any] | None, race_id: int
    ) -> list[RelayRow]:
        """The cloud's relays serving ``race_id``, with the event relay's own figures."""
        rows: dict[int | None, RelayRow] = {}
        for r in cloud:
            if race_id in (r.get("race_ids") or ()) and not r.get("disabled"):
                seen = r.get("last_seen_ms")
                rows[int(r["id"])] = cls(
                    int(r["id"]), str(r["name"]), seen=clock_text(int(seen)) if seen else "never"
                )
        if event is not None:
            rid = event.get("relay_id")
            known = rows.get(rid if isinstance(rid, int) else None)
            backlog = event.get("backlog_fixes", event.get("backlog"))
            rows[rid if isinstance(rid, int) else None] = cls(
                rid if isinstance(rid, int) else None,
                known.name if known else str(event.get("name") or "relay"),
                uplink=str(event.get("uplink") or "—"),
                trackers=_count(event.get("trackers")),
                spectators=_count(event.get("spectators")),
                backlog=_count(backlog),
                seen="here" if known is None or known.seen == "never" else f"here, {known.seen}",
            )
        return sorted(rows.values(), key=lambda r: (r.relay_id is None, r.relay_id or 0, r.name))


def _count(value: Any) -> str:
    return str(value) if isinstance(value, int) else "—"


class RelaysTable(_Table):
    """Relays with their trackers, spectators, backlog and uplink."""

    COLUMNS = ("Relay", "Uplink", "Trackers", "Spect.", "Backlog", "Seen")

    def show(self, relays: Sequence[RelayRow]) -> None:
        """Show the relays."""
        self.replace(
            (
                str(r.relay_id) if r.relay_id is not None else f"here:{r.name}",
                (
                    Text(r.name),
                    Text(r.uplink, style=UPLINK_STYLE.get(r.uplink, "dim")),
                    r.trackers,
                    r.spectators,
                    r.backlog,
                    r.seen,
                ),
            )
            for r in relays
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the action log: who did what, when, and what became of it."""

    action_id: str
    """The command (or a race-state message's made-up key)."""
    at_ms: int
    """When it was decided (or recorded), UTC ms."""
    official: str
    """Who."""
    what: str
    """What, for people."""
    outcome: str
    """Where it is now: recorded by the cloud, queued on the relay, queued here, refused."""


class ActionLog(_Table):
    """Every action of the race, oldest first, updated as its fate changes."""

    COLUMNS = ("Time", "Official", "Action", "Outcome")
    WIDTHS = (8, 14, 60, 56)

    def make_columns(self) -> None:
        for name, width in zip(self.COLUMNS, self.WIDTHS, strict=True):
            self.add_column(name, width=width)

    def record(self, entry: LogEntry) -> None:
        """Add the entry, or update its line when the action is already there."""
        outcome = Text(entry.outcome, style=_outcome_style(entry.outcome))
        if entry.action_id in self.rows:
            self.update_cell(entry.action_id, self.ordered_columns[3].key, outcome)
            return
        self.add_row(
            clock_text(entry.at_ms),
            Text(entry.official),
            Text(entry.what),
            outcome,
            key=entry.action_id,
        )
        self.move_cursor(row=self.row_count - 1)


def _outcome_style(outcome: str) -> str:
    if outcome.startswith("refused"):
        return "bold red"
    if "queued" in outcome:
        return "yellow"
    return "green"


class QueueStatus(Static):
    """The local queue at a glance."""

    entries: reactive[tuple[Queued, ...]] = reactive(tuple)
    """The queued commands."""

    def render(self) -> Text:
        if not self.entries:
            return Text("Queue: empty — every command has reached a server")
        oldest = self.entries[0]
        error = oldest.last_error or "waiting"
        return Text(
            f"Queue: {len(self.entries)} waiting here since {clock_text(oldest.queued_ms)}, "
            f"{oldest.attempts} failed tries — {error}"
        )
