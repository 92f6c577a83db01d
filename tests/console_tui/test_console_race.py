"""The console against a real cloud and relay on loopback, riders uploading through the relay.

One cloud and one relay per module. Race A: three riders uploaded through the relay
before the console opens (the board from the relay). Race B: two riders upload in rounds
while a cloud-only console follows the cloud's live stream (the board scored here).
Race C: race commands (start to publish). Race D: rider actions on a start list.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from textual.widgets import Input

from console_tui.app import ConsoleApp
from console_tui.client import CloudClient
from console_tui.discovery import find_relays, relay_url
from console_tui.errors import ConsoleError, SessionExpired
from console_tui.screens.login import LoginScreen
from console_tui.screens.modals import ConfirmScreen, HelpScreen, RiderActionScreen
from console_tui.servers import Servers, probe, resolve
from console_tui.widgets import AlertsTable, Leaderboard, RelaysTable
from sync_protocol.device_status import DeviceStatus
from sync_protocol.discovery import RelayAdvert
from sync_protocol.upload import CONTENT_TYPE, STATUS_PATH
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import PASSWORD, admin_client, staff_client, user_client
from tests.console_tui.test_console_screens import (
    SIZE,
    board_rows,
    go_live,
    log_in,
    log_outcomes,
    make_console,
    new_race,
    open_race,
    rider_action,
    shows,
    snapshot,
    type_text,
    until,
    username,
)
from tests.edge_relay.harness import RelayProcess, RelayRider, now_ms, start_relay
from tests.edge_relay.test_relay_battery import post_statuses
from tests.edge_relay.test_relay_ingest import hello_only, upload, wait_for

_dirs = itertools.count(1)


@dataclass
class Event:
    """The module's servers, accounts and races."""

    cloud: CloudServer
    relay: RelayProcess
    admin: httpx.Client
    official: str
    racer: str
    race_a: int
    race_b: int
    riders_a: list[RelayRider]
    riders_b: list[RelayRider]


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Event]:
    tmp = tmp_path_factory.mktemp("console")
    cloud = start_cloud(tmp / "cloud")
    relay: RelayProcess | None = None
    try:
        admin = admin_client(cloud, tmp)
        official = username(staff_client(cloud, admin, "official"))
        racer, _ = user_client(cloud, "racer")
        race_a, race_b = new_race(admin, "Stage A"), new_race(admin, "Stage B")
        enrolled = admin.post("/api/relays", json={"name": "finish", "race_ids": [race_a, race_b]})
        assert enrolled.status_code == 201, enrolled.text
        start = now_ms() - 61_000  # the last fixes are fresh
        riders_a = [
            RelayRider(cloud, admin, race_a, count=60, offset_m=150.0 * i, start_ms=start)
            for i in range(3)
        ]
        riders_b = [
            RelayRider(cloud, admin, race_b, count=60, offset_m=150.0 * i, start_ms=start)
            for i in range(2)
        ]
        go_live(admin, race_a)
        go_live(admin, race_b)
        relay = start_relay(tmp / "relay", cloud, enrolled.json()["credential"], "--tick-ms", "200")
        wait_for(lambda: relay_serves(relay, race_a, race_b), what="relay configuration")
        for first in range(1, 61, 20):  # in rounds, as riders do: each round is news
            for rider in riders_a:
                asyncio.run(upload(relay.quic_port, rider, rider.batch(first, first + 19)))
        # two trackers tell the relay their battery; the third never does
        for rider, level in zip(riders_a, (74, 12), strict=False):
            (reply,) = asyncio.run(post_statuses(relay.quic_port, rider, rider.status(level)))
            assert reply[0] == 204, reply
        yield Event(
            cloud, relay, admin, official, username(racer), race_a, race_b, riders_a, riders_b
        )
    finally:
        if relay is not None:
            relay.stop()
        cloud.stop()


def relay_serves(relay: RelayProcess, *race_ids: int) -> bool:
    with relay.client() as c:
        return {r["id"] for r in c.get("/api/info").json()["races"]} >= set(race_ids)


def console(event: Event, tmp_path: Path, *, with_relay: bool) -> ConsoleApp:
    relay = event.relay.url if with_relay else None
    return make_console(event.cloud.url, relay, tmp_path / f"console-{next(_dirs)}")


def test_a_racer_is_refused_and_a_wrong_password_too(event: Event, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=False)
        async with app.run_test(size=SIZE) as pilot:
            await log_in(pilot, event.racer)
            error = pilot.app.screen.query_one("#login-error")
            await until(pilot, lambda: "Refused" in str(error.render()), "the refusal")
            assert "is a racer: race control is for officials and admins" in str(error.render())
            assert isinstance(pilot.app.screen, LoginScreen)
            assert app.services.cloud.session is None
            snapshot(app, "login")
            pilot.app.screen.query_one("#username", Input).value = ""
            await log_in(pilot, event.official, "not the password at all")
            await until(pilot, lambda: "wrong" in str(error.render()), "the wrong password")
            assert isinstance(pilot.app.screen, LoginScreen)

    asyncio.run(scenario())


def test_board_from_the_relay_shows_riders_gaps_groups_and_the_relay(
    event: Event, tmp_path: Path
) -> None:
    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_race(pilot, event.official, event.race_a)
            bibs = {str(r.bib) for r in event.riders_a}

            def full_board() -> bool:
                rows = board_rows(screen)
                return {r[1] for r in rows} == bibs and all(r[3] != "—" for r in rows)

            await until(pilot, full_board, "three riders with gaps")
            rows = board_rows(screen)
            assert [r[0] for r in rows] == ["1", "2", "3"]
            # the rider who started furthest along leads; the others are 15 s and 30 s back
            assert [r[1] for r in rows] == [str(r.bib) for r in reversed(event.riders_a)]
            assert [r[3] for r in rows] == ["+0:00", "+0:15", "+0:30"]
            # the trackers' batteries, from the relay's standings (the leader sent none)
            assert [r[8] for r in rows] == ["—", "12%", "74%"]
            alerts = screen.query_one(AlertsTable)
            await until(pilot, lambda: alerts.row_count >= 1, "the alerts panel")
            low = [str(alerts.get_row_at(i)[1]) for i in range(alerts.row_count)
                   if str(alerts.get_row_at(i)[0]) == "low-battery"]  # fmt: skip
            assert low == [f"#{event.riders_a[1].bib}"]
            assert screen.source == "board from relay finish"
            relays = screen.query_one(RelaysTable)
            await until(pilot, lambda: relays.row_count == 1, "the relay in the relays panel")
            relay_row = [str(c) for c in relays.get_row_at(0)]
            assert relay_row[0] == "finish"
            assert relay_row[1] == "up"
            assert relay_row[2] == "3"  # trackers
            assert relay_row[4].isdigit()  # backlog
            # a penalty for the leader: the cloud records it, the relay's board shows it
            await rider_action(pilot, "p", "cutting the corner", seconds="10")
            await until(pilot, lambda: board_rows(screen)[0][10] == "+10 s", "the penalty")
            assert list(log_outcomes(screen).values()) == ["recorded by the cloud"]
            snapshot(app, "leaderboard")

    asyncio.run(scenario())


def test_board_scored_from_the_cloud_stream_shows_bibs_and_gaps(
    event: Event, tmp_path: Path
) -> None:
    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_race(pilot, event.official, event.race_b)
            await until(pilot, lambda: screen.source == "board from cloud", "the cloud feed")
            await until(pilot, lambda: len(board_rows(screen)) == 2, "the start list")
            feed = screen.cloud_feed
            assert feed is not None
            for first in range(1, 61, 20):  # riders go on uploading, twenty fixes at a time
                for rider in event.riders_b:
                    await upload(event.relay.quic_port, rider, rider.batch(first, first + 19))
                for rider in event.riders_b:  # forwarded: one live message per round
                    for _ in range(400):
                        reply = await hello_only(event.relay.quic_port, rider)
                        if reply.cloud_acked_seq >= first + 19:
                            break
                        await pilot.pause(0.05)
            # a tracker uploading straight to the cloud says its battery (signed): the stream
            # carries it and the console shows it, with the charging mark
            first = event.riders_b[0]
            status = DeviceStatus.create(first.device, now_ms(), 55, True, key=first.key)
            with httpx.Client(base_url=event.cloud.url) as tracker:
                sent = tracker.post(
                    STATUS_PATH, content=status.encode(), headers={"content-type": CONTENT_TYPE}
                )
                assert sent.status_code == 204, sent.text
            await until(pilot, lambda: all(r[3] != "—" for r in board_rows(screen)), "gaps")
            await until(
                pilot,
                lambda: {r[1]: r[8] for r in board_rows(screen)}.get(str(first.bib)) == "55% ⚡",
                f"the battery of #{first.bib}",
            )
            assert {r[1]: r[8] for r in board_rows(screen)}[str(event.riders_b[1].bib)] == "—"
            rows = board_rows(screen)
            assert {r[1] for r in rows} == {str(r.bib) for r in event.riders_b}
            assert rows[0][3] == "+0:00"
            assert rows[1][3] != rows[0][3]
            assert all(r[7].startswith(("live", "late", "lost")) for r in rows)
            assert "via finish" in " ".join(r[7] for r in rows)

    asyncio.run(scenario())


def test_help_screen_lists_the_keys(event: Event, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_race(pilot, event.official, event.race_a)
            await pilot.press("question_mark")
            await until(pilot, lambda: shows(app, HelpScreen), "the help screen")
            snapshot(app, "help")
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is screen, "help closed")

    asyncio.run(scenario())


def test_each_rider_action_is_confirmed_logged_and_recorded_in_the_cloud(
    event: Event, tmp_path: Path
) -> None:
    race_d = new_race(event.admin, "Stage D", course=False)
    riders = []
    for _ in range(2):
        _, user_id = user_client(event.cloud, "racer")
        response = event.admin.post(f"/api/races/{race_d}/registrations", json={"user_id": user_id})
        assert response.status_code == 201, response.text
        riders.append(user_id)

    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_race(pilot, event.official, race_d)
            board = screen.query_one(Leaderboard)
            await until(pilot, lambda: board.row_count == 2, "the start list")
            assert board.selected_rider == riders[0]
            # a time penalty with its reason; the confirmation is the snapshot
            await pilot.press("p")
            await until(pilot, lambda: shows(app, RiderActionScreen), "the form")
            await type_text(pilot, "20")
            await pilot.press("enter")
            await type_text(pilot, "drafting behind the car")
            await pilot.press("enter")
            await until(pilot, lambda: shows(app, ConfirmScreen), "confirmation")
            snapshot(app, "confirm")
            await pilot.press("y")
            await rider_action(pilot, "f", "crashed out", confirm=False)  # cancelled
            await rider_action(pilot, "f", "crashed out")
            await rider_action(pilot, "x", "dangerous sprint")
            await rider_action(pilot, "i", "decision overturned")
            await until(
                pilot,
                lambda: board_rows(screen)[0][1] == "1" and board_rows(screen)[0][9] != "dsq",
                "the reinstated rider back on top",
            )
            assert board.selected_rider == riders[0]  # the cursor followed the rider
            await pilot.press("down")
            assert board.selected_rider == riders[1]
            await rider_action(pilot, "s", "did not sign on")
            await until(
                pilot,
                lambda: (
                    len(log_outcomes(screen)) == 5
                    and set(log_outcomes(screen).values()) == {"recorded by the cloud"}
                ),
                "five actions recorded",
            )
            logged = log_outcomes(screen)
        recorded = event.admin.get(f"/api/races/{race_d}/actions").json()
        assert [(a["kind"], a["rider_id"]) for a in recorded] == [
            ("penalty", riders[0]),
            ("dnf", riders[0]),
            ("dsq", riders[0]),
            ("reinstate", riders[0]),
            ("dns", riders[1]),
        ]
        assert {a["action_id"] for a in recorded} == set(logged)
        assert {a["actor"] for a in recorded} == {event.official}
        assert (recorded[0]["seconds"], recorded[0]["reason"]) == (20, "drafting behind the car")
        statuses = {
            r["rider_id"]: r["status"]
            for r in event.admin.get(f"/api/races/{race_d}/riders").json()
        }
        assert statuses == {riders[0]: "registered", riders[1]: "dns"}

    asyncio.run(scenario())


def test_race_commands_from_start_to_publish(event: Event, tmp_path: Path) -> None:
    race_c = new_race(event.admin, "Stage C")

    def cloud_state() -> str:
        return str(event.admin.get(f"/api/races/{race_c}").json()["state"])

    async def scenario() -> None:
        app = console(event, tmp_path, with_relay=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_race(pilot, event.official, race_c)
            await until(pilot, lambda: screen.view is not None, "the race view")
            await pilot.press("R")  # resume a scheduled race: refused here, nothing sent
            steps = [("S", "live"), ("N", "neutralised"), ("R", "live"), ("F", "finished"),
                     ("P", "published")]  # fmt: skip
            for key, state in steps:
                await pilot.press(key)
                await until(pilot, lambda: shows(app, ConfirmScreen), "confirmation")
                await pilot.press("y")
                await until(pilot, lambda s=state: cloud_state() == s, f"the cloud: {state}")
                await until(
                    pilot,
                    lambda s=state: screen.view is not None and screen.view.state == s,
                    f"the console: {state}",
                )
            outcomes = list(log_outcomes(screen).values())
            assert outcomes == ["recorded by the cloud"] * 5

    asyncio.run(scenario())


def test_servers_are_told_apart_and_a_relay_is_found_with_zeroconf(
    event: Event, tmp_path: Path
) -> None:
    found = asyncio.run(resolve([event.relay.url, event.cloud.url], interfaces=["127.0.0.1"]))
    assert found == Servers(event.cloud.url, event.relay.url, "relay")
    two_clouds = resolve(
        [event.cloud.url, event.cloud.url.replace("127.0.0.1", "localhost")],
        interfaces=["127.0.0.1"],
    )
    with pytest.raises(ConsoleError, match="two clouds"):
        asyncio.run(two_clouds)
    with pytest.raises(ConsoleError, match="neither a Gruppetto cloud nor an event relay"):
        asyncio.run(probe(event.cloud.url + "/healthz"))
    # an advertising relay (its own name: other tests may advertise relays meanwhile)
    name = f"console-{uuid.uuid4().hex[:8]}"
    enrolled = event.admin.post("/api/relays", json={"name": name, "race_ids": [event.race_a]})
    relay = start_relay(tmp_path / "relay", event.cloud, enrolled.json()["credential"],
                        "--advertise", "--interface", "127.0.0.1", "--name", name)  # fmt: skip
    try:

        async def look() -> list[RelayAdvert]:
            for _ in range(5):
                found = [a for a in await find_relays(["127.0.0.1"], 10.0) if a.name == name]
                if found:
                    return found
            return []

        (advert,) = asyncio.run(look())
        assert relay_url(advert) == relay.url
        kind, info = asyncio.run(probe(relay_url(advert)))
        assert (kind, info["http_port"]) == ("relay", relay.http_port)
    finally:
        relay.stop()


def test_the_login_is_refreshed_before_it_lapses_and_ends_when_revoked(event: Event) -> None:
    official = staff_client(event.cloud, event.admin, "official")
    me = official.get("/api/me").json()["user"]
    now = [1_000.0]

    async def scenario() -> None:
        cloud = CloudClient(event.cloud.url, clock=lambda: now[0])
        try:
            first = await cloud.login(me["username"], PASSWORD)
            now[0] += first.expires_at - now[0] - 30  # within a minute of lapsing
            await cloud.get_json("/api/races")
            second = cloud.session
            assert second is not None
            assert second.refresh_token != first.refresh_token
            assert second.access_token != first.access_token
            response = event.admin.patch(f"/api/users/{me['id']}", json={"disabled": True})
            assert response.status_code == 200, response.text
            now[0] = second.expires_at  # lapsed: the refresh is refused, the login is over
            with pytest.raises(SessionExpired, match="log in again"):
                await cloud.get_json("/api/races")
            assert cloud.session is None
        finally:
            await cloud.aclose()

    asyncio.run(scenario())


def test_a_revoked_login_takes_the_official_back_to_the_login_screen(
    event: Event, tmp_path: Path
) -> None:
    name = username(staff_client(event.cloud, event.admin, "official"))
    user_id = next(u["id"] for u in event.admin.get("/api/users").json() if u["username"] == name)
    now = [time.monotonic()]
    app = make_console(event.cloud.url, None, tmp_path / "console", clock=lambda: now[0])

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await open_race(pilot, name, event.race_a)
            response = event.admin.patch(f"/api/users/{user_id}", json={"disabled": True})
            assert response.status_code == 200, response.text
            now[0] += 3_600  # the access token lapses; the refresh is refused
            await until(pilot, lambda: shows(app, LoginScreen), "the login screen")
            note = str(app.screen.query_one("#login-error").render())
            assert "log in again" in note

    asyncio.run(scenario())
