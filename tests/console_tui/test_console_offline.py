"""Race control with the cloud away: the event relay takes commands, else the local queue.

Each test runs its own cloud, kills it (``CloudServer.stop(SIGKILL)``: a link cut is
abrupt, and a graceful stop waits seconds for the console's open live stream) while the
console works, and starts it again on the same port and data directory.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from console_tui.commands import Command, Delivery
from console_tui.screens.modals import ConfirmScreen
from console_tui.widgets import QueueStatus
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import admin_client, staff_client, user_client
from tests.console_tui.test_console_screens import (
    board_rows,
    go_live,
    log_outcomes,
    make_console,
    new_race,
    open_race,
    rider_action,
    shows,
    snapshot,
    until,
    username,
)
from tests.edge_relay.harness import start_relay
from tests.edge_relay.test_relay_ingest import configured, wait_for


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[list[CloudServer]]:
    """A cloud of the test's own; the list holds the running one (tests restart it)."""
    servers = [start_cloud(tmp_path / "cloud")]
    yield servers
    servers[-1].stop()


def port_of(server: CloudServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def again(server: CloudServer, admin: httpx.Client) -> httpx.Client:
    """The admin's session on a restarted cloud (the old server's clients are closed)."""
    client = server.client()
    client.headers["Authorization"] = admin.headers["Authorization"]
    return client


def setup_race(server: CloudServer, tmp_path: Path) -> tuple[httpx.Client, str, int, int]:
    admin = admin_client(server, tmp_path)
    official = username(staff_client(server, admin, "official"))
    race_id = new_race(admin, "Mountain stage")
    _, rider = user_client(server, "racer")
    response = admin.post(f"/api/races/{race_id}/registrations", json={"user_id": rider})
    assert response.status_code == 201, response.text
    go_live(admin, race_id)
    return admin, official, race_id, rider


def test_offline_queue_reaches_the_cloud_exactly_once(
    cloud: list[CloudServer], tmp_path: Path
) -> None:
    admin, official, race_id, rider = setup_race(cloud[0], tmp_path)
    data = tmp_path / "console"

    async def scenario() -> None:
        app = make_console(cloud[0].url, None, data)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_race(pilot, official, race_id)
            await until(pilot, lambda: len(board_rows(screen)) == 1, "the rider")
            cloud[0].stop(signal.SIGKILL)  # the uplink is gone, as abruptly as it goes
            await rider_action(pilot, "f", "crashed in the descent")
            await pilot.press("N")
            await until(pilot, lambda: shows(app, ConfirmScreen), "confirmation")
            await pilot.press("y")
            queue = screen.query_one(QueueStatus)
            await until(pilot, lambda: len(queue.entries) == 2, "two commands queued")
            assert set(log_outcomes(screen).values()) == {"queued here (retrying)"}
            stored = json.loads((data / "queue.json").read_text())["commands"]
            assert [c["command"]["kind"] for c in stored] == ["dnf", "neutralise"]
            snapshot(app, "queue")
            # the cloud comes back on the same address: the queue goes, oldest first
            cloud.append(start_cloud(cloud[0].data_dir, port=port_of(cloud[0])))
            await until(pilot, lambda: not queue.entries, "the queue to empty")
            # Each is recorded by the queue's retry, or by a send still under way when the
            # cloud came back (the neutralise's send takes the queue oldest first): either
            # way once, which the cloud's action list below checks.
            await until(
                pilot,
                lambda: all(
                    outcome in ("recorded by the cloud (from the queue)", "recorded by the cloud")
                    for outcome in log_outcomes(screen).values()
                ),
                "both recorded",
            )
            logged = set(log_outcomes(screen))
            # an answer lost after the cloud recorded them: sent again, counted once
            dispatcher = app.services.dispatcher
            for entry in stored:
                dispatcher.outbox.add(Command.from_json(entry["command"]), 0)
            replayed = await dispatcher.flush()
            assert [r.delivery for _, r in replayed] == [Delivery.CLOUD, Delivery.SETTLED]
            assert not dispatcher.outbox.entries
        admin_now = again(cloud[-1], admin)
        actions = admin_now.get(f"/api/races/{race_id}/actions").json()
        assert [(a["kind"], a["rider_id"], a["actor"]) for a in actions] == [
            ("dnf", rider, official)
        ]
        assert actions[0]["action_id"] in logged
        race = admin_now.get(f"/api/races/{race_id}").json()
        assert race["state"] == "neutralised"

    asyncio.run(scenario())


def test_the_relay_takes_commands_while_the_cloud_is_away(
    cloud: list[CloudServer], tmp_path: Path
) -> None:
    admin, official, race_id, rider = setup_race(cloud[0], tmp_path)
    enrolled = admin.post("/api/relays", json={"name": "finish", "race_ids": [race_id]})
    assert enrolled.status_code == 201, enrolled.text
    relay = start_relay(tmp_path / "relay", cloud[0], enrolled.json()["credential"])

    async def scenario() -> None:
        app = make_console(cloud[0].url, relay.url, tmp_path / "console")
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_race(pilot, official, race_id)
            await until(pilot, lambda: screen.source == "board from relay finish", "relay")
            await until(pilot, lambda: len(board_rows(screen)) == 1, "the rider")
            cloud[0].stop(signal.SIGKILL)
            await rider_action(pilot, "p", "feeding outside the zone", seconds="30")
            await until(pilot, lambda: board_rows(screen)[0][10] == "+30 s", "the penalty")
            await pilot.press("N")
            await until(pilot, lambda: shows(app, ConfirmScreen), "confirmation")
            await pilot.press("y")
            # the relay applied both to its own board at once
            await until(
                pilot,
                lambda: screen.view is not None and screen.view.state == "neutralised",
                "the race neutralised on the relay",
            )
            assert set(log_outcomes(screen).values()) == {
                "queued on relay finish (it forwards it to the cloud)"
            }
            assert not app.services.outbox.entries
            cloud.append(start_cloud(cloud[0].data_dir, port=port_of(cloud[0])))

            admin_now = again(cloud[-1], admin)

            def forwarded() -> bool:
                return bool(admin_now.get(f"/api/races/{race_id}/actions").json())

            def state() -> str:
                return str(admin_now.get(f"/api/races/{race_id}").json()["state"])

            await until(pilot, forwarded, "the relay to forward the penalty")
            await until(pilot, lambda: state() == "neutralised", "the relay to forward the state")
            action_id = next(iter(log_outcomes(screen)))
        actions = again(cloud[-1], admin).get(f"/api/races/{race_id}/actions").json()
        assert [(a["action_id"], a["kind"], a["seconds"], a["actor"]) for a in actions] == [
            (action_id, "penalty", 30, official)
        ]
        assert actions[0]["rider_id"] == rider

    try:
        wait_for(lambda: configured(relay, race_id), what="relay configuration")
        asyncio.run(scenario())
    finally:
        relay.stop()
