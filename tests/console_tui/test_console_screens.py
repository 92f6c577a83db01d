"""Driving the console in tests: Pilot helpers, cloud set-up, SVG snapshots.

The other modules drive the real app with these (keyboard first: keys for every action,
text set straight into the focused input). ``snapshot`` writes the screens' SVGs to
docs/img/ when ``GRUPPETTO_SCREENSHOTS=1`` and otherwise compares structure, not pixels:
the committed picture and the fresh export show the same landmarks on as many rows.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from console_tui.app import ConsoleApp
from console_tui.client import CloudClient, RelayClient
from console_tui.outbox import Outbox
from console_tui.screens.login import LoginScreen, RacesScreen
from console_tui.screens.modals import ConfirmScreen, RiderActionScreen
from console_tui.screens.race import RaceScreen
from console_tui.services import Services
from console_tui.widgets import ActionLog, Leaderboard
from tests.cloud.helpers import PASSWORD, loop_gpx
from tests.edge_relay.harness import now_ms

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
SIZE = (160, 48)
"""The terminal the tests (and the screenshots) use."""

# -- the cloud ---------------------------------------------------------------


def new_race(admin: httpx.Client, name: str, *, course: bool = True) -> int:
    race = admin.post("/api/races", json={"name": name, "starts_at": now_ms()})
    assert race.status_code == 201, race.text
    race_id = int(race.json()["id"])
    if course:
        assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(5.0)).status_code == 200
    return race_id


def go_live(admin: httpx.Client, race_id: int) -> None:
    response = admin.post(f"/api/races/{race_id}/state", json={"state": "live"})
    assert response.status_code == 200, response.text


def username(client: httpx.Client) -> str:
    return str(client.get("/api/me").json()["user"]["username"])


# -- the app ------------------------------------------------------------------


def make_console(
    cloud_url: str,
    relay_url: str | None,
    data_dir: Path,
    clock: Callable[[], float] = time.monotonic,
) -> ConsoleApp:
    """The console as ``gruppetto console`` builds it, at a test's pace."""
    cloud = CloudClient(cloud_url, clock=clock)
    relay = None
    if relay_url is not None:
        relay = RelayClient(relay_url, token=lambda: cloud.access_token, name="relay finish")
    services = Services(
        cloud, Outbox.open(data_dir), relay, retry_s=0.5, poll_s=0.3, refresh_s=1.0, tick_s=0.3
    )
    return ConsoleApp(services)


async def until(pilot: Pilot[None], check: Callable[[], object], what: str) -> None:
    """Let the app run until ``check()`` holds (bounded, so a hang fails with a reason)."""
    for _ in range(600):
        if check():
            return
        await pilot.pause(0.05)
    screen = "\n".join(svg_rows(pilot.app.export_screenshot()))
    raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")


def shows(app: App[Any], screen: type[Screen[Any]]) -> bool:
    """The app's current screen is ``screen`` and its widgets are composed and mounted.

    A pushed screen is current before its ``compose`` has run; querying it then finds
    nothing, so tests wait for this rather than for the type alone.
    """
    return isinstance(app.screen, screen) and app.screen.is_mounted


async def type_text(pilot: Pilot[None], text: str) -> None:
    """Type into the focused input (set at once: key by key adds nothing but time)."""
    field = pilot.app.focused
    assert isinstance(field, Input), field
    field.value += text
    await pilot.pause()


async def log_in(pilot: Pilot[None], name: str, password: str = PASSWORD) -> None:
    await until(pilot, lambda: shows(pilot.app, LoginScreen), "the login screen")
    await pilot.click("#username")
    await type_text(pilot, name)
    await pilot.press("enter")
    await type_text(pilot, password)
    await pilot.press("enter")


async def open_race(pilot: Pilot[None], name: str, race_id: int) -> RaceScreen:
    await log_in(pilot, name)
    await until(pilot, lambda: shows(pilot.app, RacesScreen), "the race list")
    races = pilot.app.screen
    assert isinstance(races, RacesScreen)
    await until(pilot, lambda: str(race_id) in races.races, f"race {race_id} in the list")
    table = races.query_one("#races")
    for _ in range(len(races.races)):  # keyboard only: walk down to the race, Enter
        if table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == str(race_id):  # type: ignore[attr-defined]
            break
        await pilot.press("down")
    await pilot.press("enter")
    await until(pilot, lambda: shows(pilot.app, RaceScreen), "the race screen")
    screen = pilot.app.screen
    assert isinstance(screen, RaceScreen)
    return screen


def board_rows(screen: RaceScreen) -> list[list[str]]:
    table = screen.query_one(Leaderboard)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def rider_action(
    pilot: Pilot[None], key: str, reason: str, seconds: str = "", *, confirm: bool = True
) -> None:
    """Press the action's key on the selected rider, fill the form, answer the confirmation."""
    await pilot.press(key)
    await until(pilot, lambda: shows(pilot.app, RiderActionScreen), "the form")
    if seconds:
        await type_text(pilot, seconds)
        await pilot.press("enter")
    await type_text(pilot, reason)
    await pilot.press("enter")
    await until(pilot, lambda: shows(pilot.app, ConfirmScreen), "the confirmation")
    await pilot.press("y" if confirm else "n")
    await until(pilot, lambda: shows(pilot.app, RaceScreen), "the race again")


def log_outcomes(screen: RaceScreen) -> dict[str, str]:
    table = screen.query_one(ActionLog)
    return {str(key.value): str(table.get_row(key)[3]) for key in table.rows}


# -- snapshots ----------------------------------------------------------------

BOARD = [
    "Leaderboard", "Groups", "Alerts", "Relays", "Action log",
    r"Pos\s+Bib\s+Rider\s+Gap\s+km/h\s+To go km\s+Fix\s+Link\s+Batt\s+Status\s+Pen",
    r"Relay\s+Uplink\s+Trackers\s+Spect\.\s+Backlog\s+Seen",
    r"Time\s+Official\s+Action\s+Outcome",
    "Queue: ", "p Penalty", "f DNF", "S Start", "P Publish", r"\? Help",
]  # fmt: skip
LANDMARKS: dict[str, list[str]] = {
    "login": ["Gruppetto race control", "Username", "Password", "Log in", "is a racer"],
    "leaderboard": [*BOARD, r"\+0:15", r"\+10 s", "recorded by the cloud", "74%", "12%",
                    "low-battery"],
    "confirm": ["Confirm: time penalty", r"time penalty \+20 s to #1 racer\d+: drafting",
                r"Recorded as official\d+ at", r"Confirm \(y\)", r"Cancel \(n\)"],
    "help": ["keys", "time penalty", "DNF", "DNS", "DSQ", "reinstate", "neutralise",
             "publish", "Batt: the tracker's battery", "low-battery alert", "action id"],
    "queue": [*BOARD, "Queue: 2 waiting here", "cannot reach the cloud", "queued here",
              "DNF"],
}  # fmt: skip
"""What each committed screenshot must show (regular expressions)."""


def svg_rows(svg: str) -> list[str]:
    """The screen's text, one string per terminal row, from a Textual SVG export."""
    root = ElementTree.fromstring(svg)
    rows: dict[float, list[tuple[float, str]]] = {}
    for node in root.iter("{http://www.w3.org/2000/svg}text"):
        text = (node.text or "").replace("\xa0", " ")
        rows.setdefault(float(node.get("y", 0)), []).append((float(node.get("x", 0)), text))
    return ["".join(t for _, t in sorted(parts)) for _, parts in sorted(rows.items())]


def snapshot(app: ConsoleApp, name: str) -> None:
    """Write docs/img/console-NAME.svg (GRUPPETTO_SCREENSHOTS=1) and check its structure:
    the committed picture and this run show the same landmarks (titles, columns, keys)."""
    landmarks = LANDMARKS[name]
    svg = app.export_screenshot(title=f"gruppetto console — {name}")
    path = IMG / f"console-{name}.svg"
    if os.environ.get("GRUPPETTO_SCREENSHOTS") == "1":
        IMG.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
    fresh = "\n".join(svg_rows(svg))
    missing = [m for m in landmarks if not re.search(m, fresh)]
    assert not missing, f"{name}: not on screen: {missing}\n{fresh}"
    assert path.exists(), f"{path} is missing: run with GRUPPETTO_SCREENSHOTS=1"
    committed = svg_rows(path.read_text(encoding="utf-8"))
    assert len(committed) == len(svg_rows(svg)), f"{name}: the screen size changed"
    gone = [m for m in landmarks if not re.search(m, "\n".join(committed))]
    assert not gone, f"{path.name} is out of date (re-run with GRUPPETTO_SCREENSHOTS=1): {gone}"


@pytest.mark.parametrize("name", sorted(LANDMARKS))
def test_the_committed_screenshots_show_their_landmarks(name: str) -> None:
    path = IMG / f"console-{name}.svg"
    rows = svg_rows(path.read_text(encoding="utf-8"))
    assert len(rows) >= SIZE[1]  # the title bar, then one row per terminal line
    text = "\n".join(rows)
    assert not [m for m in LANDMARKS[name] if not re.search(m, text)]
