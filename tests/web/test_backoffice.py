"""The back office in real headless Chromium, against a real cloud on loopback.

An admin logs in through the login page, creates a race, uploads its GPX course (seeing
the drawn course and its profile), sets a checkpoint, registers a rider, enrols a relay
(whose credential is shown once), and starts the race, by keyboard; the audit log lists
all of it. An official invited with a one-time password chooses their own at the login
page and sees races read-only; a racer is refused. A finished race whose riders uploaded
their fixes straight to the cloud (``/v1/batches``) shows its results and charts, and
its results are published. Screenshots go to the test's tmp dir (and to docs/img/ with
GRUPPETTO_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, Page, expect

from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.fix import Fix
from sync_protocol.framing import encode_frames
from sync_protocol.upload import BATCHES_PATH, CONTENT_TYPE, decode_results
from tests.cloud.conftest import CloudServer, start_cloud
from tests.cloud.helpers import PASSWORD, admin_client, loop_gpx, user_client
from tests.web.browser import open_browser, screenshot
from tests.web.test_relay_page import CONTRAST

WAIT_MS = 20_000
"""How long a wait for the page may take before the test fails (a deadline, not a
measurement: each wait ends as soon as its condition holds)."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("backoffice"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(cloud: CloudServer, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    """An admin made with ``gruppetto cloud create-admin``, with a bearer token."""
    return admin_client(cloud, tmp_path_factory.mktemp("admin"))


def username(client: httpx.Client) -> str:
    return str(client.get("/api/me").json()["user"]["username"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as chromium:
        yield chromium


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Pages in fresh contexts (no cookies shared); uncaught errors in any fail the test."""
    contexts, errors = [], []

    def make(viewport: dict[str, int] = DESKTOP) -> Page:
        context = browser.new_context(viewport=viewport, color_scheme="light")  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    expect.set_options(timeout=WAIT_MS)
    try:
        yield make
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default, for other modules
        for context in contexts:
            context.close()
    assert not errors, errors


def log_in(page: Page, cloud: CloudServer, name: str, password: str, to: str = "/") -> None:
    page.goto(f"{cloud.url}/login?next={to}")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def race_id_of(page: Page) -> int:
    match = re.search(r"/admin/races/(\d+)", page.url)
    assert match, page.url
    return int(match.group(1))


def assert_readable(page: Page, selectors: list[str]) -> None:
    """Text has at least WCAG AA contrast (4.5:1) on its background."""
    ratios = page.evaluate(CONTRAST, selectors)
    poor = {k: v for k, v in ratios.items() if v == "missing" or v < 4.5}
    assert not poor, poor


def test_an_admin_prepares_a_race_and_starts_it(
    cloud: CloudServer, admin: httpx.Client, open_page: OpenPage, tmp_path: Path
) -> None:
    racer, _ = user_client(cloud, "racer")
    racer_name = username(racer)
    page = open_page()
    log_in(page, cloud, username(admin), PASSWORD)
    expect(page).to_have_url(re.compile(r"/admin/races$"))  # admins land in the back office

    # A race.
    page.get_by_text("Create a race").click()
    page.get_by_label("Name").fill("Stage 4 — Col de la Madeleine")
    page.get_by_label("Riders at most").fill("40")
    page.get_by_role("button", name="Create the race").click()
    expect(page).to_have_url(re.compile(r"/admin/races/\d+$"))
    race_id = race_id_of(page)
    expect(page.locator("#race-name")).to_have_text("Stage 4 — Col de la Madeleine")
    expect(page.locator("#race-state")).to_have_text("Scheduled")
    expect(page.get_by_role("button", name="Start the race")).to_be_disabled()  # no course yet

    # Its course, from a GPX file: two laps of a 5 km circuit, drawn and profiled.
    page.get_by_role("link", name="Course", exact=True).click()
    gpx = tmp_path / "circuit.gpx"
    gpx.write_bytes(loop_gpx(5.0))
    page.get_by_label("Laps").fill("2")
    page.get_by_label("GPX file").set_input_files(str(gpx))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#course-map svg polyline.course-line")).to_be_attached()
    expect(page.locator("#course-map svg .start")).to_be_attached()
    expect(page.locator("#profile svg path.ridge")).to_be_attached()
    facts = page.locator("#course-facts")
    expect(facts).to_contain_text(re.compile(r"Distance\s*9\.\d\d km|Distance\s*10\.\d\d km"))
    expect(facts).to_contain_text(re.compile(r"Laps\s*2"))

    # A checkpoint, typed into the editor; it shows on the profile and the map.
    page.get_by_role("button", name="Add a checkpoint").click()
    page.get_by_label("Checkpoint 1: name").fill("Sprint at the church")
    page.get_by_label("Checkpoint 1: kind").select_option("sprint")
    page.get_by_label("Checkpoint 1: at, km from the start").fill("2.5")
    page.get_by_role("button", name="Save the checkpoints").click()
    expect(page.locator("#profile svg line.cp-line")).to_have_count(1)
    expect(page.locator("#course-map svg .cp-mark")).to_have_count(1)
    course = admin.get(f"/api/races/{race_id}").json()["course"]
    assert [(c["name"], c["kind"], c["distance_m"]) for c in course["checkpoints"]] == [
        ("Sprint at the church", "sprint", 2500.0)
    ]
    screenshot(page, tmp_path, "backoffice-course")

    # A rider, with a chosen bib.
    page.get_by_role("link", name="Riders", exact=True).click()
    page.get_by_label("Racer").select_option(label=racer_name)
    page.get_by_label("Bib (optional)").fill("7")
    page.get_by_role("button", name="Register").click()
    rider_row = page.locator("#riders-rows tr", has_text=racer_name)
    expect(rider_row).to_contain_text("7")
    expect(page.locator("#riders-note")).to_have_text("1 of at most 40 riders.")

    # A relay for the race: its credential is shown once, then never again.
    page.get_by_role("navigation", name="Back office").get_by_role("link", name="Relays").click()
    page.get_by_text("Enrol a relay").click()
    page.get_by_label("Name").fill("Finish line")
    page.get_by_label(re.compile("Stage 4")).check()
    page.get_by_role("button", name="Enrol").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("shown only this once")
    credential = page.locator("#secret-value").input_value()
    assert re.fullmatch(r"grr_\d+_[A-Za-z0-9_-]{20,}", credential), credential
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_have_count(0)
    # A closed dialog leaves the accessibility tree at once and the document on its
    # "close" event, a task later: wait for that before reading the page's HTML.
    expect(page.locator("#secret-value")).to_have_count(0)
    assert credential not in page.content()
    page.reload()
    expect(page.locator("#relays-rows tr", has_text="Finish line")).to_contain_text(
        "never reported"
    )
    assert credential not in page.content()
    # The credential works: the relay reports its health, and the page shows it.
    cert = "ab" * 32
    with cloud.client(headers={"Authorization": f"Relay {credential}"}) as relay:
        status = {
            "name": "Finish line",
            "page_url": "http://127.0.0.1:8080/",
            "cert_sha256": cert,
            "self_signed": True,
            "cert_not_after_ms": int(time.time() * 1000) + 30 * 3_600_000,  # rotation failed?
            "trackers": 1,
            "spectators": 12,
            "backlog_fixes": 345,
            "uplink": "up",
            "races": [race_id],
        }
        assert relay.post("/api/relay/status", json=status).status_code == 200
    page.reload()
    relay_row = page.locator("#relays-rows tr", has_text="Finish line")
    expect(relay_row).to_contain_text("reporting")
    expect(relay_row).to_contain_text("345")
    expect(relay_row.locator("code")).to_have_attribute("title", cert)
    expect(relay_row.locator(".expiring")).to_have_text(", expires in 30 h")
    expect(relay_row).to_contain_text("Stage 4")

    # Start the race, by keyboard: Cancel has the focus in the confirmation, then Start.
    page.goto(f"{cloud.url}/admin/races/{race_id}")
    start = page.get_by_role("button", name="Start the race")
    expect(start).to_be_enabled()
    expect(page.locator("#checklist")).to_contain_text("1 rider on the start list")
    start.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be changed any more")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    confirm = dialog.get_by_role("button", name="Start the race")
    expect(confirm).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.locator("#race-state")).to_have_text("Live")
    assert admin.get(f"/api/races/{race_id}").json()["state"] == "live"
    expect(page.get_by_role("button", name="Finish the race")).to_be_visible()
    expect(page.locator("#edit-race")).to_be_hidden()  # no more edits once live
    assert_readable(page, ["#race-name", "#race-state", ".tabs a", ".note", ".sections a"])
    screenshot(page, tmp_path, "backoffice-race")

    # The audit log holds every step, newest first.
    page.get_by_role("link", name="Audit log", exact=True).first.click()
    page.get_by_label("Race").select_option(str(race_id))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"race_id={race_id}$"))
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(5)
    actions = [rows.nth(i).get_attribute("data-action") for i in range(5)]
    assert actions == [
        "race.state",
        "registration.add",
        "race.checkpoints",
        "race.course",
        "race.create",
    ]
    expect(rows.first).to_contain_text("scheduled → live")
    expect(rows.nth(1)).to_contain_text(racer_name)
    screenshot(page, tmp_path, "backoffice-audit")


def test_an_invited_official_sees_races_read_only(
    cloud: CloudServer, admin: httpx.Client, open_page: OpenPage, tmp_path: Path
) -> None:
    race = admin.post("/api/races", json={"name": "Club crit", "starts_at": "2026-09-01T10:00:00Z"})
    race_id = race.json()["id"]
    page = open_page()
    log_in(page, cloud, username(admin), PASSWORD, to="/admin/users")
    expect(page).to_have_url(re.compile(r"/admin/users$"))

    # Invite an official with a one-time password (shown once).
    page.get_by_text("Invite someone").click()
    page.get_by_label("Username").fill("marie.official")
    page.get_by_label("Role", exact=True).select_option("official")
    page.get_by_role("button", name="Create the account").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("One-time password for marie.official")
    temporary = page.locator("#secret-value").input_value()
    assert len(temporary) >= 16
    dialog.get_by_role("button", name="Done").click()
    row = page.locator("#users-rows tr", has_text="marie.official")
    expect(row).to_contain_text("one-time password until")

    # A wrong guess counts towards a lock-out; the admin clears it.
    with cloud.client() as anonymous:
        wrong = {"username": "marie.official", "password": "not the password at all"}
        assert anonymous.post("/api/auth/login", json=wrong).status_code == 401
    page.reload()
    row = page.locator("#users-rows tr", has_text="marie.official")
    expect(row.locator("td.num")).to_have_text("1")
    row.get_by_role("button", name="Unlock marie.official").click()
    expect(row.locator("td.num")).to_have_text("0")
    expect(row.get_by_role("button", name="Unlock marie.official")).to_have_count(0)

    # The official logs in with it, must choose their own password, and lands in the
    # back office, which they see read-only.
    official = open_page()
    log_in(official, cloud, "marie.official", temporary)
    expect(official.locator("#reset-form")).to_be_visible()
    official.get_by_label("New password", exact=True).fill("my own long secret")
    official.get_by_label("The new password again").fill("my own long secret")
    official.get_by_role("button", name="Set my password and log in").click()
    expect(official).to_have_url(re.compile(r"/admin/races$"))
    expect(official.locator("#races-rows")).to_contain_text("Club crit")
    expect(official.get_by_text("Create a race")).to_have_count(0)
    nav = official.get_by_role("navigation", name="Back office")
    expect(nav.get_by_role("link", name="Relays")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
    official.goto(f"{cloud.url}/admin/races/{race_id}")
    expect(official.locator("#details")).to_contain_text("open to racers")
    expect(official.locator("#edit-race")).to_have_count(0)
    official.get_by_role("link", name="Course", exact=True).click()
    expect(official.locator("#course-note")).to_have_text("No course yet.")
    expect(official.locator("#upload-course")).to_have_count(0)
    official.get_by_role("link", name="Riders", exact=True).click()
    expect(official.locator("#riders-note")).to_have_text("Nobody is registered yet.")
    expect(official.locator("#add-rider")).to_have_count(0)
    official.goto(f"{cloud.url}/admin/users")
    expect(official.get_by_role("heading", level=1)).to_have_text(
        "Your account cannot open this page."
    )
    screenshot(page, tmp_path, "backoffice-users")


def test_a_racer_is_refused_the_back_office(cloud: CloudServer, open_page: OpenPage) -> None:
    racer, _ = user_client(cloud, "racer")
    page = open_page()
    response = page.goto(f"{cloud.url}/admin/races")
    assert response is not None
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fadmin%2Fraces$"))
    page.get_by_label("Username").fill(username(racer))
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_response(re.compile(r"/admin/races$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account cannot open this page.")
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    # the landing page sends racers to the spectator app
    landing = racer.get("/", follow_redirects=False)
    assert (landing.status_code, landing.headers["location"]) == (303, "/watch")


def test_an_admin_edits_a_race_moves_it_through_its_states_and_manages_accounts(
    cloud: CloudServer, admin: httpx.Client, open_page: OpenPage
) -> None:
    created = admin.post(
        "/api/races", json={"name": "Club crit", "starts_at": time.time_ns() // 1_000_000}
    )
    race_id = created.json()["id"]
    page = open_page()
    log_in(page, cloud, username(admin), PASSWORD, to=f"/admin/races/{race_id}")
    expect(page).to_have_url(f"{cloud.url}/admin/races/{race_id}")

    # Edit the race while it is scheduled.
    page.get_by_label("Name", exact=True).fill("Club crit, short loop")
    page.get_by_label("Riders at most").fill("30")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_timeout(2000)
    expect(page.locator("#race-name")).to_have_text("Club crit, short loop")
    expect(page.locator("#details")).to_contain_text(re.compile(r"Riders at most\s*30"))
    edited = admin.get(f"/api/races/{race_id}").json()
    assert (edited["name"], edited["max_riders"]) == ("Club crit, short loop", 30)

    # Every state change, each after its confirmation: live, neutralised, live, finished.
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(2.0)).status_code == 200
    page.reload()
    for button, shown in (
        ("Start the race", "Live"),
        ("Neutralise", "Neutralised"),
        ("Resume the race", "Live"),
        ("Finish the race", "Finished"),
    ):
        page.locator("#state-actions").get_by_role("button", name=button).click()
        page.get_by_role("dialog").get_by_role("button", name=button).click()
        expect(page.locator("#race-state")).to_have_text(shown)
    assert admin.get(f"/api/races/{race_id}").json()["state"] == "finished"
    expect(page.get_by_role("button", name="Publish the results")).to_be_visible()

    # Accounts: change a racer's role, disable them (they cannot log in), enable them.
    _, user_id = user_client(cloud, "racer")
    name = next(u["username"] for u in admin.get("/api/users").json() if u["id"] == user_id)
    page.goto(f"{cloud.url}/admin/users")
    row = page.locator(f'#users-rows tr[data-user-id="{user_id}"]')
    row.get_by_label(f"Role of {name}").select_option("spectator")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("racer → spectator")
    dialog.get_by_role("button", name="Make them spectator").click()
    row = page.locator(f'#users-rows tr[data-user-id="{user_id}"]')
    expect(row.get_by_label(f"Role of {name}")).to_have_value("spectator")
    row.get_by_role("button", name=f"Disable {name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()
    row = page.locator(f'#users-rows tr[data-user-id="{user_id}"]')
    expect(row).to_contain_text("disabled")
    attempt = {"username": name, "password": PASSWORD}
    with cloud.client() as anonymous:
        assert anonymous.post("/api/auth/login", json=attempt).status_code in (401, 403)
    row.get_by_role("button", name=f"Enable {name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Enable").click()
    row = page.locator(f'#users-rows tr[data-user-id="{user_id}"]')
    expect(row).to_contain_text("active")
    with cloud.client() as anonymous:
        assert anonymous.post("/api/auth/login", json=attempt).status_code == 200
    user = next(u for u in admin.get("/api/users").json() if u["id"] == user_id)
    assert (user["role"], user["disabled"]) == ("spectator", False)


PAST_THE_LINE_M = 20.0
"""Riders stop this far past the finish line (a fix exactly on it may round to short)."""


class HistoryRider:
    """A racer riding a circuit at ``speed`` m/s from ``start_ms``, signing each fix."""

    def __init__(
        self,
        cloud: CloudServer,
        admin: httpx.Client,
        race_id: int,
        speed: float,
        start_ms: int,
        seconds: int,
    ) -> None:
        self.client, self.id = user_client(cloud, "racer")
        registered = admin.post(f"/api/races/{race_id}/registrations", json={"user_id": self.id})
        assert registered.status_code == 201, registered.text
        self.key = Ed25519PrivateKey.generate()
        public = public_key_bytes(self.key)
        self.device = device_id(public)
        enrolled = self.client.post(
            "/api/devices", json={"public_key": base64.b64encode(public).decode()}
        )
        assert enrolled.status_code == 201, enrolled.text
        DeviceCertificate.decode(base64.b64decode(enrolled.json()["certificate"]))
        course = Course.from_dict(admin.get(f"/api/races/{race_id}").json()["course"])
        total = course.total_length_m
        fixes = []
        for s in range(1, seconds + 1):
            ridden = min(s * speed, total + PAST_THE_LINE_M)  # on a circuit, past the line
            lat, lon, ele = course.point_at(ridden if ridden <= total else ridden - total)
            moving = s * speed <= total + PAST_THE_LINE_M
            t_ms = start_ms + s * 1000
            fixes.append(
                Fix.from_degrees(
                    s, t_ms, lat, lon, ele_m=ele or 0.0, speed_ms=speed if moving else 0.0
                )
            )
        hashes = [genesis(self.device), *extend_all(genesis(self.device), fixes)]
        self.batches = [
            encode_batch(seal(self.device, fixes[i : i + 60], hashes[i], key=self.key))
            for i in range(0, len(fixes), 60)
        ]


def test_a_finished_race_shows_its_results_and_statistics(
    cloud: CloudServer, admin: httpx.Client, open_page: OpenPage, tmp_path: Path
) -> None:
    # A 2 km race ridden four minutes ago by three riders at different speeds, who
    # uploaded straight to the cloud (certificates are valid from five minutes back).
    gun = time.time_ns() // 1_000_000 - 240_000
    race_id = admin.post("/api/races", json={"name": "Hill climb", "starts_at": gun}).json()["id"]
    assert admin.put(f"/api/races/{race_id}/course", content=loop_gpx(2.0)).status_code == 200
    checkpoints = [
        {"name": "Halfway", "kind": "intermediate", "distance_m": 1000.0},
        {"name": "The wall", "kind": "climb", "distance_m": 1500.0, "end_m": 1900.0},
    ]
    put = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": checkpoints})
    assert put.status_code == 200, put.text
    riders = [HistoryRider(cloud, admin, race_id, v, gun, 230) for v in (12.0, 10.0, 9.5)]
    body = encode_frames([b for rider in riders for b in rider.batches])
    with cloud.client() as tracker:
        answer = tracker.post(BATCHES_PATH, content=body, headers={"content-type": CONTENT_TYPE})
    assert answer.status_code == 200, answer.text
    refused = [(r.reason, r.message) for r in decode_results(answer.content) if r.reason]
    assert not refused, refused
    for state in ("live", "finished"):
        assert admin.post(f"/api/races/{race_id}/state", json={"state": state}).status_code == 200

    page = open_page()
    log_in(page, cloud, username(admin), PASSWORD, to=f"/admin/races/{race_id}/results")
    expect(page).to_have_url(re.compile(rf"/admin/races/{race_id}/results$"))
    expect(page.locator("#results-rows tr")).to_have_count(3)
    winner = page.locator("#results-rows tr").first
    expect(winner).to_contain_text(username(riders[0].client))
    expect(winner).to_contain_text("finished")
    expect(page.locator("#speed-chart svg rect.bar")).to_have_count(3)
    expect(page.locator("#max-chart svg rect.bar")).to_have_count(3)
    expect(page.locator("#splits-chart svg path.series")).to_have_count(3)
    expect(page.locator("#splits-chart .legend li")).to_have_count(3)
    expect(page.locator("#summary")).to_contain_text(re.compile(r"Riders with fixes\s*3"))
    expect(page.locator("#stats-rows")).to_contain_text("The wall")
    screenshot(page, tmp_path, "backoffice-results")

    # Publishing the results, after a confirmation.
    page.get_by_role("button", name="Publish the results").click()
    page.get_by_role("dialog").get_by_role("button", name="Publish the results").click()
    expect(page.locator("#race-state")).to_have_text("Results published")
    expect(page.locator("#publish")).to_contain_text("published and final")
    assert admin.get(f"/api/races/{race_id}").json()["state"] == "published"

    # Past races side by side.
    page.get_by_role("link", name="Statistics", exact=True).click()
    picks = page.locator("#race-picks")
    expect(picks.get_by_label(re.compile("Hill climb"))).to_be_checked()
    expect(page.locator("#compare-rows")).to_contain_text("Hill climb")
    expect(page.locator("#speed-chart svg rect.bar")).to_have_count(1)
    screenshot(page, tmp_path, "backoffice-stats")

    # On a phone: one column, nothing wider than the screen but the tables' own regions.
    phone = open_page(PHONE)
    log_in(phone, cloud, username(admin), PASSWORD, to=f"/admin/races/{race_id}/results")
    expect(phone.locator("#speed-chart svg rect.bar")).to_have_count(3)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    screenshot(phone, tmp_path, "backoffice-phone")


def test_pages_redirect_refuse_and_protect_as_html(cloud: CloudServer, admin: httpx.Client) -> None:
    with cloud.client(follow_redirects=False) as anonymous:
        page = anonymous.get("/admin/races/1/course?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fadmin%2Fraces%2F1%2Fcourse%3Fx%3D1"
        for unsafe in ("//evil.example/", "/\\evil.example", "https://evil.example/", "/a\nb"):
            login = anonymous.get("/login", params={"next": unsafe})
            assert 'data-next="/"' in login.text, unsafe
        login = anonymous.get("/login", params={"next": "/admin/races/3?tab=1"})
        assert 'data-next="/admin/races/3?tab=1"' in login.text
        headers = login.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert anonymous.get("/").headers["location"] == "/watch"
    missing = admin.get("/admin/races/999999")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "There is nothing here." in missing.text
    assert admin.get("/", follow_redirects=False).headers["location"] == "/admin"
    script = admin.get("/static/common/api.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
