"""The officials' console: log in, pick a race, watch it and control it.

``ConsoleApp(services)`` is given its clients and queue (:class:`~console_tui.services.Services`)
so tests drive it against real servers with ``async with app.run_test() as pilot``. The
app owns the services and closes them when it exits.
"""

from __future__ import annotations

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import var

from .client import Session
from .screens.login import LoginScreen, RacesScreen
from .screens.modals import HelpScreen
from .screens.race import RaceScreen
from .services import Services

__all__ = ["ConsoleApp"]


class ConsoleApp(App[None]):
    """Gruppetto race control."""

    CSS_PATH = "app.tcss"
    TITLE = "Gruppetto race control"
    BINDINGS = [  # noqa: RUF012 (Textual's class attribute)
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    session: var[Session | None] = var(None)
    """The logged-in official."""

    def __init__(self, services: Services, *, username: str = "") -> None:
        super().__init__()
        self.services = services
        self.username = username
        self._flushing = False

    def on_mount(self) -> None:
        self.push_screen(LoginScreen(self.services.cloud, self.services.where(), self.username))
        self.set_interval(self.services.retry_s, self.retry)

    def retry(self) -> None:
        """Try the local queue again while someone is logged in and something waits."""
        if self.session is not None and len(self.services.outbox) and not self._flushing:
            self.flush_queue()

    @work(exclusive=True, group="flush")
    async def flush_queue(self) -> None:
        """Send what waits in the local queue, oldest first; show what became of it."""
        self._flushing = True
        try:
            settled = await self.services.dispatcher.flush()
        finally:
            self._flushing = False
        for screen in self.screen_stack:
            if isinstance(screen, RaceScreen):
                screen.show_settled(settled, " (from the queue)")

    async def on_unmount(self) -> None:
        await self.services.aclose()

    def action_help(self) -> None:
        """Keys, columns and where commands go."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @on(LoginScreen.LoggedIn)
    def _logged_in(self, event: LoginScreen.LoggedIn) -> None:
        self.session = event.session
        self.switch_screen(RacesScreen(self.services.cloud))

    @on(RacesScreen.Picked)
    def _picked(self, event: RacesScreen.Picked) -> None:
        if self.session is not None:
            self.push_screen(RaceScreen(self.services, event.race, self.session.username))

    @on(RaceScreen.SessionEnded)
    def _session_ended(self, event: RaceScreen.SessionEnded) -> None:
        if self.session is None or isinstance(self.screen, LoginScreen):
            return  # already handled (several workers may report the same end)
        self.session = None
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(
            LoginScreen(self.services.cloud, self.services.where(), self.username, event.reason)
        )
