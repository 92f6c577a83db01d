"""Log in (officials and admins only), then pick a race."""

from __future__ import annotations

import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from ..client import CloudClient, Session
from ..errors import ConsoleError

__all__ = ["LoginScreen", "RacesScreen"]


class LoginScreen(Screen[None]):
    """Username and password against the cloud; a racer or spectator is refused."""

    class LoggedIn(Message):
        """An official (or admin) logged in."""

        def __init__(self, session: Session) -> None:
            super().__init__()
            self.session = session

    def __init__(self, cloud: CloudClient, where: str, username: str = "", note: str = "") -> None:
        super().__init__()
        self.cloud, self.where, self.username, self.note = cloud, where, username, note

    def compose(self) -> ComposeResult:
        with Vertical(id="login"):
            yield Label("Gruppetto race control", id="login-title")
            yield Static(self.where, id="login-where", markup=False)
            yield Label("Username")
            yield Input(value=self.username, placeholder="official's username", id="username")
            yield Label("Password")
            yield Input(password=True, placeholder="password", id="password")
            yield Button("Log in (Enter)", id="login-button", variant="primary")
            yield Static(self.note, id="login-error", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        field = self.query("#password" if self.username else "#username")
        if field:  # absent when the screen is already being replaced
            field.first(Input).focus()

    @on(Input.Submitted, "#username")
    def _to_password(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#login-button")
    def _submit(self) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not username or not password:
            self.query_one("#login-error", Static).update("Give a username and a password.")
            return
        self.query_one("#login-error", Static).update("Logging in…")
        self.log_in(username, password)

    @work(exclusive=True, group="login")
    async def log_in(self, username: str, password: str) -> None:
        """Ask the cloud; stay here with the reason when it says no."""
        try:
            session = await self.cloud.login(username, password)
        except ConsoleError as exc:
            self.query_one("#login-error", Static).update(f"Refused: {exc.message}")
            self.query_one("#password", Input).value = ""
            self.query_one("#password", Input).focus()
            return
        self.post_message(self.LoggedIn(session))


class RacesScreen(Screen[None]):
    """The cloud's races; Enter picks one."""

    BINDINGS = [Binding("r", "reload", "Reload")]  # noqa: RUF012 (Textual's class attribute)

    class Picked(Message):
        """The official picked a race."""

        def __init__(self, race: dict[str, Any]) -> None:
            super().__init__()
            self.race = race

    def __init__(self, cloud: CloudClient) -> None:
        super().__init__()
        self.cloud = cloud
        self.races: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="races-pane"):
            yield Label("Pick a race (↑ ↓, Enter)", id="races-title")
            yield DataTable(id="races", cursor_type="row", zebra_stripes=True)
            yield Static("", id="races-error", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#races", DataTable)
        table.add_columns("Race", "Name", "State", "Starts", "Riders", "Course")
        table.focus()
        self.action_reload()

    def action_reload(self) -> None:
        """Read the races again."""
        self.load()

    @work(exclusive=True, group="races")
    async def load(self) -> None:
        """``GET /api/races``."""
        try:
            races = await self.cloud.get_json("/api/races")
        except ConsoleError as exc:
            self.query_one("#races-error", Static).update(f"{exc.message} — r reloads")
            return
        self.query_one("#races-error", Static).update("")
        table = self.query_one("#races", DataTable)
        table.clear()
        self.races = {str(r["id"]): r for r in races}
        for race in races:
            starts = datetime.datetime.fromtimestamp(race["starts_at_ms"] / 1000)
            table.add_row(
                str(race["id"]),
                Text(str(race["name"])),
                race["state"],
                starts.strftime("%Y-%m-%d %H:%M"),
                str(race.get("riders", "")),
                "yes" if race.get("has_course") else "no",
                key=str(race["id"]),
            )

    @on(DataTable.RowSelected, "#races")
    def _picked(self, event: DataTable.RowSelected) -> None:
        race = self.races.get(str(event.row_key.value))
        if race is not None:
            self.post_message(self.Picked(race))
