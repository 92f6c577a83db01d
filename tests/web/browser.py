"""Browser tests' set-up: the system Chromium under Playwright, and a race being ridden.

``open_browser`` drives Debian's ``/usr/bin/chromium`` (never ``playwright install``),
installing it with apt when it is missing and we are root (CI is root, with no stdin),
headless with the flags known to work with WebTransport, in a fresh profile.

``ridden_race`` is what a spectator watches: a real cloud, a race on a circuit, a real
relay serving it, riders who have uploaded their first minute, and a feeder thread that
keeps uploading each rider's fixes as their time comes, over HTTP/3, until the block
ends. One rider goes silent from the start so the page has a stale rider to show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from sync_protocol.framing import encode_frames
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.h3 import BlockingH3
from tests.edge_relay.harness import (
    RelayProcess,
    RelayRider,
    now_ms,
    setup_relay_race,
    start_race,
    start_relay,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS_ENV = "GRUPPETTO_SCREENSHOTS"


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt when missing (as root); idempotent."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{CHROMIUM} is missing: install Debian's chromium package "
            "(apt-get install --no-install-recommends chromium) to run the browser tests"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if _run(install, env).returncode != 0:  # stale package lists: refresh once, retry
        _run(["apt-get", "update"], env)
        result = _run(install, env)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get could not install chromium:\n{result.stdout[-3000:]}")
    if not CHROMIUM.exists():
        raise RuntimeError(f"chromium was installed but {CHROMIUM} is not there")
    return CHROMIUM


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )


@contextmanager
def open_browser() -> Iterator[Browser]:
    """Headless system Chromium; Playwright gives each launch a fresh profile directory."""
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, directory: Path, name: str) -> Path:
    """Save a screenshot as a test artifact; also into docs/img/ when asked to."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(SCREENSHOTS_ENV) == "1":
        target = REPO / "docs" / "img" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path


ROAD = (1_000.0, 985.0, 700.0, 690.0, 400.0)
"""Where the moving riders started, metres along the circuit: a breakaway of two, two
chasing about 30 s behind, a straggler a minute down. (Each rider costs the cloud two
Argon2id hashes, about half a second: five make the point.)"""
HISTORY_S = 90
"""Seconds of fixes uploaded before the page opens: the leader has passed where everyone
behind is now, so every gap at the same point of the course is known."""


@dataclass
class RiddenRace:
    """A race on a real relay, with riders uploading in the background."""

    cloud: CloudServer
    admin: httpx.Client
    race_id: int
    relay: RelayProcess
    riders: list[RelayRider]
    """The riders who keep uploading."""
    silent: RelayRider
    """A rider whose last fix is already forty seconds old."""
    uploaded: dict[int, int] = field(default_factory=dict)
    """Bib -> the last fix sequence number uploaded."""
    errors: list[str] = field(default_factory=list)
    """What went wrong on the feeder thread."""
    _connection: BlockingH3 | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _feeder: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.relay.url

    def start_feeding(self) -> None:
        """Connect over HTTP/3, upload what is due, then keep uploading each second."""
        self._connection = BlockingH3("127.0.0.1", self.relay.quic_port)
        for rider in [*self.riders, self.silent]:
            _hello(self._connection, rider)
        _upload_due(self, self._connection, [*self.riders, self.silent], step=5)
        self._stop = threading.Event()
        self._feeder = threading.Thread(
            target=_feed, args=(self, self._connection, self._stop), daemon=True
        )
        self._feeder.start()

    def stop_feeding(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(timeout=30)
            self._feeder = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        assert not self.errors, self.errors

    def stop_relay(self) -> None:
        """Stop the relay process (the riders stop uploading meanwhile)."""
        self.stop_feeding()
        self.relay.stop()

    def start_relay(self) -> None:
        """Start the stopped relay again on its data directory and ports."""
        self.relay = self.relay.restart(same_ports=True)
        self.start_feeding()


@contextmanager
def ridden_race(tmp: Path, *, minutes: float = 4.0) -> Iterator[RiddenRace]:
    """A live race on a relay: riders uploading a fix a second, and one gone silent."""
    cloud = start_cloud(tmp / "cloud")
    try:
        admin, race_id, credential = setup_relay_race(cloud, tmp)
        with ride_race(cloud, admin, race_id, credential, tmp, minutes=minutes) as race:
            yield race
    finally:
        cloud.stop()


@contextmanager
def ride_race(
    cloud: CloudServer,
    admin: httpx.Client,
    race_id: int,
    credential: str,
    tmp: Path,
    *,
    minutes: float = 4.0,
    go_live: Callable[[], None] | None = None,
) -> Iterator[RiddenRace]:
    """Riders registered on a scheduled race with a course, the race put live (by
    ``go_live``; by default through the API), a relay started with ``credential``, and the
    riders uploading to it."""
    race: RiddenRace | None = None
    relay: RelayProcess | None = None
    try:
        now = now_ms()
        count = HISTORY_S + int(minutes * 60)
        moving = [
            RelayRider(
                cloud,
                admin,
                race_id,
                count=count,
                start_ms=now - HISTORY_S * 1000,
                offset_m=offset,
            )
            for offset in ROAD
        ]
        silent = RelayRider(cloud, admin, race_id, count=20, start_ms=now - 60_000)
        if go_live is None:
            start_race(admin, race_id)
        else:
            go_live()
        relay = start_relay(tmp / "relay", cloud, credential)
        _wait_configured(relay, race_id)
        race = RiddenRace(cloud, admin, race_id, relay, moving, silent)
        race.start_feeding()
        yield race
    finally:
        if race is not None:
            race.stop_feeding()
            race.relay.stop()
        elif relay is not None:
            relay.stop()


def _wait_configured(relay: RelayProcess, race_id: int) -> None:
    with relay.client() as client:
        for _ in range(400):
            if any(r["id"] == race_id for r in client.get("/api/info").json()["races"]):
                return
            time.sleep(0.05)
    raise AssertionError(f"the relay never served race {race_id}")


def _hello(connection: BlockingH3, rider: RelayRider) -> None:
    status, _, body = connection.request("POST", "/v1/hello", body=rider.hello())
    if status != 200:
        raise AssertionError(f"hello refused ({status}): {body!r}")


def _upload_due(
    race: RiddenRace, connection: BlockingH3, riders: list[RelayRider], step: int = 1_000_000
) -> None:
    """Upload every fix whose time has come, in requests of at most ``step`` fixes a rider.

    The relay scores only each rider's newest fix of a request (live-first), so the
    history goes in small steps: it becomes the riders' progress logs, which gaps at the
    same point of the course are measured on.
    """
    now = now_ms()
    while True:
        batches, sent = [], {}
        for rider in riders:
            done = race.uploaded.get(rider.bib, 0)
            due = min(done + step, sum(1 for fix in rider.fixes if fix.t_ms <= now))
            if due > done:
                batches.append(rider.batch(done + 1, due))
                sent[rider.bib] = due
        if not batches:
            return
        status, _, reply = connection.request("POST", "/v1/batches", body=encode_frames(batches))
        if status != 200:
            raise AssertionError(f"upload refused ({status}): {reply!r}")
        race.uploaded.update(sent)


def _feed(race: RiddenRace, connection: BlockingH3, stop: threading.Event) -> None:
    """Each second, the fixes that have come due (the riders ride on in real time)."""
    while not stop.wait(1.0):
        try:
            _upload_due(race, connection, race.riders)
        except Exception as exc:  # reported by the tests, never lost silently
            race.errors.append(repr(exc))
            return
