"""The whole story in real headless Chromium: the back office prepares a race, the relay it
enrols serves it, and a spectator watches it live.

A real cloud on loopback. An admin logs in through the login page, creates a race, uploads
its GPX course, places a checkpoint, enrols a relay and copies its credential from the
dialog; racers register (each with an enrolled device); the admin starts the race in the
back office. A real ``gruppetto relay`` is started with that credential, the riders upload
a fix a second to it over HTTP/3 (``tests/web/browser.py``), and the back office shows the
relay reporting with its certificate. A spectator logs in and watches the riders move over
WebTransport (with the relay's certificate hash), and on a phone with WebTransport disabled
over the WebSocket, with the checkpoint's splits from the cloud's history. Screenshots go
to the test's tmp dir.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.cloud.conftest import start_cloud
from tests.cloud.helpers import PASSWORD, admin_client, loop_gpx, user_client
from tests.web.browser import open_browser, ride_race, screenshot

WAIT_MS = 20_000
"""How long a wait for the page may take before the test fails (a deadline, not a
measurement: each wait ends as soon as its condition holds)."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
NO_WEBTRANSPORT = "delete window.WebTransport;"
SPRINT_KM = 2.2
"""Where the checkpoint is: the leaders pass it soon after the race goes live, the rest
within the next minute (they ride 10 m/s from 0.4 to 1 km, 90 s before the riders are
registered; the race goes live a few seconds after that, and the splits count from the
moment it did, not from its scheduled start: tomorrow, the form's default)."""
SPLIT_WAIT_S = 60
"""How long the cloud may take to have the leader through the sprint (a deadline)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as chromium:
        yield chromium


def new_page(browser: Browser, errors: list[str], **options: object) -> Page:
    """A page in a fresh context; its uncaught errors and CSP refusals go to ``errors``."""
    init_script = options.pop("init_script", None)
    context = browser.new_context(**options)  # type: ignore[arg-type]
    if isinstance(init_script, str):
        context.add_init_script(init_script)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return page


def log_in(page: Page, url: str, name: str, to: str) -> None:
    page.goto(f"{url}/login?next={to}")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}{to}", timeout=WAIT_MS)


def wait_until_moved(page: Page, bib: int) -> None:
    """Wait for rider ``bib``'s dot on the map to be somewhere else than it is now."""
    where = f'#map .dot[data-bib="{bib}"]'
    page.wait_for_selector(where, timeout=WAIT_MS)
    before = page.eval_on_selector(where, "d => [d.style.left, d.style.top]")
    page.wait_for_function(
        """([where, before]) => {
            const d = document.querySelector(where);
            return d && (d.style.left !== before[0] || d.style.top !== before[1]);
        }""",
        arg=[where, before],
        timeout=WAIT_MS,
    )


def expect_live(page: Page, transport: str, label: str) -> None:
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-phase", "live", timeout=WAIT_MS)
    expect(connection).to_have_attribute("data-transport", transport)
    expect(page.locator("#connection-text")).to_have_text(f"Live over {label}")
    expect(page.locator("#via")).to_have_text("from relay Finish line")


def wait_for_split(admin: httpx.Client, race_id: int, bib: int) -> None:
    """Until the cloud's history has rider ``bib`` through the sprint (the relay forwards
    the fixes it stored; the live page loads the splits when it opens)."""
    deadline = time.monotonic() + SPLIT_WAIT_S
    while time.monotonic() < deadline:
        stats = admin.get(f"/api/races/{race_id}/stats")
        if stats.status_code == 200:
            for rider in stats.json():
                if rider["bib"] == bib and any(s["t_ms"] for s in rider["splits"]):
                    return
        time.sleep(0.2)
    raise AssertionError(f"the cloud never had rider {bib} through the sprint")


def wait_relayed(admin: httpx.Client, race_id: int) -> None:
    """Until the relay has told the cloud where it is (the live page's CSP needs it)."""
    for _ in range(400):
        relays = admin.get(f"/api/races/{race_id}/relays").json()
        if any(r["webtransport_url"] and not r["stale"] for r in relays):
            return
        time.sleep(0.05)
    raise AssertionError(f"no relay of race {race_id} reported to the cloud")


def test_an_admin_prepares_a_race_its_relay_serves_and_a_spectator_watches(
    browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    cloud = start_cloud(tmp_path / "cloud")
    try:
        admin = admin_client(cloud, tmp_path)
        admin_name = str(admin.get("/api/me").json()["user"]["username"])
        office = new_page(browser, errors, viewport=DESKTOP)
        log_in(office, cloud.url, admin_name, "/admin/races")

        # The race, its course and a checkpoint, in the back office.
        office.get_by_text("Create a race").click()
        office.get_by_label("Name").fill("Evening crit")
        office.get_by_role("button", name="Create the race").click()
        expect(office).to_have_url(re.compile(r"/admin/races/\d+$"))
        race_id = int(office.url.rsplit("/", 1)[1])
        office.get_by_role("link", name="Course", exact=True).click()
        gpx = tmp_path / "circuit.gpx"
        gpx.write_bytes(loop_gpx(5.0))
        office.get_by_label("GPX file").set_input_files(str(gpx))
        office.get_by_role("button", name="Upload").click()
        expect(office.locator("#course-map svg polyline.course-line")).to_be_attached()
        office.get_by_role("button", name="Add a checkpoint").click()
        office.get_by_label("Checkpoint 1: name").fill("Sprint")
        office.get_by_label("Checkpoint 1: kind").select_option("sprint")
        office.get_by_label("Checkpoint 1: at, km from the start").fill(str(SPRINT_KM))
        office.get_by_role("button", name="Save the checkpoints").click()
        expect(office.locator("#profile svg line.cp-line")).to_have_count(1)

        # A relay for it: the credential is copied from the dialog that shows it once.
        nav = office.get_by_role("navigation", name="Back office")
        nav.get_by_role("link", name="Relays").click()
        office.get_by_text("Enrol a relay").click()
        office.get_by_label("Name").fill("Finish line")
        office.get_by_label(re.compile("Evening crit")).check()
        office.get_by_role("button", name="Enrol").click()
        credential = office.locator("#secret-value").input_value()
        office.get_by_role("dialog").get_by_role("button", name="Done").click()

        def go_live() -> None:
            """The admin starts the race once the riders are on the start list."""
            office.goto(f"{cloud.url}/admin/races/{race_id}")
            expect(office.locator("#checklist")).to_contain_text("6 riders on the start list")
            office.get_by_role("button", name="Start the race").click()
            office.get_by_role("dialog").get_by_role("button", name="Start the race").click()
            expect(office.locator("#race-state")).to_have_text("Live")

        with ride_race(cloud, admin, race_id, credential, tmp_path, go_live=go_live) as race:
            wait_relayed(admin, race_id)
            leader = race.riders[0]

            # The back office sees the relay report, with its certificate's hash.
            office.goto(f"{cloud.url}/admin/relays")
            relay_row = office.locator("#relays-rows tr", has_text="Finish line")
            expect(relay_row).to_contain_text("reporting")
            expect(relay_row.locator("code")).to_have_attribute("title", race.relay.cert_sha256)
            expect(relay_row).to_contain_text("self-signed")
            expect(relay_row).to_contain_text(re.compile(r"expires in 1[0-3] days"))

            # A spectator watches over WebTransport: riders move, the splits are there.
            wait_for_split(admin, race_id, leader.bib)
            started = admin.get(f"/api/races/{race_id}").json()
            assert started["started_ms"] < started["starts_at_ms"]  # started before its time
            fan, _ = user_client(cloud, "spectator")
            fan_name = str(fan.get("/api/me").json()["user"]["username"])
            watch = new_page(browser, errors, viewport=DESKTOP)
            log_in(watch, cloud.url, fan_name, "/watch")
            watch.locator("#live-races").get_by_role("link", name=re.compile("Evening")).click()
            expect(watch).to_have_url(f"{cloud.url}/watch/{race_id}")
            expect_live(watch, "webtransport", "WebTransport")
            wait_until_moved(watch, leader.bib)
            expect(watch.locator("#map .dot")).to_have_count(len(race.riders) + 1)
            sprint = watch.locator(".checkpoint-splits .split")
            expect(sprint).to_have_count(1)
            expect(sprint.locator("h3")).to_contain_text("Sprint")
            first = sprint.locator("li").first
            expect(first).to_have_attribute("data-bib", str(leader.bib))
            expect(first.locator(".time")).to_have_text(re.compile(r"^\d+:\d\d$"))
            screenshot(watch, tmp_path, "end-to-end-live")

            # The same race on a phone whose browser has no WebTransport: the WebSocket.
            phone = new_page(
                browser, errors, viewport=PHONE, init_script=NO_WEBTRANSPORT, color_scheme="dark"
            )
            log_in(phone, cloud.url, fan_name, f"/watch/{race_id}")
            expect_live(phone, "websocket", "WebSocket")
            wait_until_moved(phone, leader.bib)
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            screenshot(phone, tmp_path, "end-to-end-phone")
            for page in (office, watch, phone):
                page.context.close()
    finally:
        cloud.stop()
    assert not errors, errors
