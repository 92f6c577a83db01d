"""The cloud's spectator app in real headless Chromium: the race list, a race live over a
relay, and a past race with its results, statistics, charts and replay.

A real cloud and a real relay on loopback (``tests/web/browser.py``: riders upload a fix a
second over HTTP/3 to the relay, which forwards them to the cloud and reports its
addresses there). A spectator registers, logs in, finds the live race in the list and
watches it: the page asks the cloud where the race is relayed and connects to the relay
over WebTransport with the relay's certificate hash, or over the WebSocket when the browser
has none. Two more races are ridden before the tests and uploaded straight to the cloud's
``/v1/batches``, as trackers out of a relay's reach would: one is finished (its page shows
the results, statistics, splits and charts, and replays the riders), the other stays live
with no relay (its page says so, and shows the checkpoint splits from the cloud's history).
Screenshots go to the test's tmp dir (and to docs/img/ with GRUPPETTO_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, Page, expect

from cloud.web.spectator import live_policy, race_sections, relay_origins
from sync_protocol.batch import encode_batch, seal
from sync_protocol.chain import device_id, extend_all, genesis, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.fix import Fix
from sync_protocol.framing import encode_frames
from sync_protocol.gpx import course_to_gpx
from sync_protocol.upload import BATCHES_PATH, CONTENT_TYPE, decode_results
from tests.cloud.helpers import PASSWORD, user_client
from tests.web.browser import RiddenRace, open_browser, ridden_race, screenshot
from tests.web.test_relay_page import CONTRAST

WAIT_MS = 20_000
"""How long a wait for the page may take before the test fails (a deadline, not a
measurement: each wait ends as soon as its condition holds)."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
NO_WEBTRANSPORT = "delete window.WebTransport;"
_spectators = itertools.count(1)


# -- races ridden before the tests, uploaded straight to the cloud ------------------------


def hill_course() -> Course:
    """A 2 km road that bends round a hill: flat, a 1 km climb, then a short descent."""
    points = []
    for i in range(41):
        d = i * 50.0
        angle = d / 2_000 * math.pi  # half a circle of radius 2 km / pi
        radius = 2_000 / math.pi
        lat = 45.0 + radius * math.sin(angle) / 111_195
        lon = 6.0 + radius * (1 - math.cos(angle)) / 78_600
        ele = 500.0 + (min(max(d - 600, 0), 1_000) * 0.06) - max(d - 1_700, 0) * 0.05
        points.append((lat, lon, ele))
    return Course.from_points(points, name="hill")


@dataclass
class PastRider:
    """A racer with an enrolled device and a ride recorded along the course."""

    client: httpx.Client
    rider_id: int
    bib: int
    key: Ed25519PrivateKey
    device: bytes
    fixes: list[Fix]
    race_id: int

    def batches(self, size: int = 60) -> list[bytes]:
        hashes = [genesis(self.device), *extend_all(genesis(self.device), self.fixes)]
        return [
            encode_batch(seal(self.device, self.fixes[i : i + size], hashes[i], key=self.key))
            for i in range(0, len(self.fixes), size)
        ]


PAST_SPEEDS = (10.5, 10.0, 10.0, 9.4, 9.0)
"""The riders' speeds in m/s: a winner, a pair (one gets a penalty), a fourth, and one who
stops for good at 1.2 km (race control makes them DNF)."""
PAST_RIDE_S = 235


def ride(course: Course, t0: int, speed: float, stop_m: float | None) -> list[Fix]:
    """A fix a second from ``t0``: along the course, on past the line, or stopped."""
    (lat1, lon1, ele1), (lat0, lon0, _) = course.points[-1], course.points[-2]
    fixes = []
    for s in range(1, PAST_RIDE_S + 1):
        d = speed * s
        moving = stop_m is None or d < stop_m
        d = d if moving else stop_m or 0.0
        if d <= course.total_length_m:
            lat, lon, ele = course.point_at(d)
        else:  # past the line, straight on along the last segment
            f = (d - course.total_length_m) / 50.0  # the points are 50 m apart
            lat, lon, ele = lat1 + f * (lat1 - lat0), lon1 + f * (lon1 - lon0), ele1
        fixes.append(
            Fix.from_degrees(
                s, t0 + s * 1000, lat, lon, ele_m=ele or 0.0, speed_ms=speed if moving else 0.0
            )
        )
    return fixes


def upload_race(race: RiddenRace, name: str, speeds: tuple[float, ...]) -> list[PastRider]:
    """A live race on the hill course whose riders rode the last four minutes (the last of
    them stopping for good at 1.2 km), uploaded to ``/v1/batches`` (no relay serves it)."""
    cloud, admin = race.cloud, race.admin
    t0 = int(time.time() * 1000) - (PAST_RIDE_S + 15) * 1000
    created = admin.post("/api/races", json={"name": name, "starts_at": t0})
    assert created.status_code == 201, created.text
    race_id = created.json()["id"]
    gpx = admin.put(f"/api/races/{race_id}/course", content=course_to_gpx(hill_course()))
    assert gpx.status_code == 200, gpx.text
    checkpoints = [
        {"name": "Sprint", "kind": "sprint", "distance_m": 500},
        {"name": "The hill", "kind": "climb", "distance_m": 600, "end_m": 1_600},
    ]
    placed = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": checkpoints})
    assert placed.status_code == 200, placed.text
    course = Course.from_dict(admin.get(f"/api/races/{race_id}").json()["course"])
    riders = []
    for i, speed in enumerate(speeds):
        client, rider_id = user_client(cloud, "racer")
        joined = client.post(f"/api/races/{race_id}/registrations", json={})
        assert joined.status_code == 201, joined.text
        key = Ed25519PrivateKey.generate()
        public = public_key_bytes(key)
        enrolled = client.post(
            "/api/devices", json={"public_key": base64.b64encode(public).decode()}
        )
        assert enrolled.status_code == 201, enrolled.text
        stop = 1_200.0 if i == len(speeds) - 1 else None
        fixes = ride(course, t0, speed, stop)
        bib = joined.json()["bib"]
        riders.append(PastRider(client, rider_id, bib, key, device_id(public), fixes, race_id))
    started = admin.post(f"/api/races/{race_id}/state", json={"state": "live"})
    assert started.status_code == 200, started.text
    body = encode_frames([b for rider in riders for b in rider.batches()])
    with cloud.client() as tracker:
        reply = tracker.post(BATCHES_PATH, content=body, headers={"content-type": CONTENT_TYPE})
    assert reply.status_code == 200, reply.text
    refused = [r.reason for r in decode_results(reply.content) if r.refused]
    assert not refused, refused
    return riders


def ride_past_race(race: RiddenRace) -> int:
    """A finished race: five riders, a time penalty, a DNF."""
    riders = upload_race(race, "Hill climb", PAST_SPEEDS)
    race_id, admin = riders[0].race_id, race.admin
    actions = [
        {"kind": "penalty", "rider_id": riders[1].rider_id, "seconds": 10, "reason": "feeding"},
        {"kind": "dnf", "rider_id": riders[-1].rider_id, "reason": "mechanical"},
    ]
    for action in actions:
        done = admin.post(f"/api/races/{race_id}/actions", json=action)
        assert done.status_code == 201, done.text
    finished = admin.post(f"/api/races/{race_id}/state", json={"state": "finished"})
    assert finished.status_code == 200, finished.text
    return race_id


# -- fixtures ------------------------------------------------------------------------------


@dataclass
class World:
    race: RiddenRace
    """The live race, ridden on a relay."""
    past_race_id: int
    """The finished race."""
    unrelayed: list[PastRider]
    """The riders of a live race that no relay serves (their fixes went to the cloud)."""

    @property
    def url(self) -> str:
        return self.race.cloud.url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ridden_race(tmp_path_factory.mktemp("spectator")) as ridden:
        past = ride_past_race(ridden)
        unrelayed = upload_race(ridden, "Night hill", (10.5, 10.0))
        _wait_relayed(ridden)
        yield World(ridden, past, unrelayed)
        assert not ridden.errors, ridden.errors


def _wait_relayed(race: RiddenRace) -> None:
    """Until the relay has told the cloud where it is (it does so on its first config)."""
    for _ in range(400):
        relays = race.admin.get(f"/api/races/{race.race_id}/relays").json()
        if any(r["webtransport_url"] and not r["stale"] for r in relays):
            return
        time.sleep(0.05)
    raise AssertionError(f"no relay of race {race.race_id} reported to the cloud")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as chromium:
        yield chromium


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """New pages in a fresh context each; uncaught errors in any of them fail the test."""
    contexts, errors = [], []

    def make(
        viewport: dict[str, int] = DESKTOP,
        init_script: str | None = None,
        color_scheme: str = "light",
    ) -> Page:
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        contexts.append(context)
        if init_script is not None:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


# -- helpers -------------------------------------------------------------------------------


def register(page: Page, world: World) -> str:
    """From the spectator app's address, through the login page, register; returns the
    username. The registration logs in and comes back to the app."""
    name = f"fan{next(_spectators)}"
    page.goto(f"{world.url}/watch")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fwatch$"))
    page.get_by_role("link", name=re.compile("Register")).click()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("The password again").fill(PASSWORD)
    page.get_by_role("button", name="Register and log in").click()
    expect(page).to_have_url(f"{world.url}/watch", timeout=WAIT_MS)
    return name


def log_in(page: Page, world: World, name: str, path: str) -> None:
    """Open ``path`` logged out, log in on the login page, land on ``path``."""
    page.goto(f"{world.url}{path}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{world.url}{path}", timeout=WAIT_MS)


def dot(page: Page, bib: int, where: str = "#map") -> dict[str, str] | None:
    return page.evaluate(  # type: ignore[no-any-return]
        """([where, bib]) => {
            const d = document.querySelector(`${where} .dot[data-bib="${bib}"]`);
            return d ? {left: d.style.left, top: d.style.top} : null;
        }""",
        [where, bib],
    )


def wait_until_moved(page: Page, bib: int, where: str = "#map") -> None:
    """Wait for rider ``bib``'s dot in ``where`` to be somewhere else than it is now."""
    page.wait_for_selector(f'{where} .dot[data-bib="{bib}"]', timeout=WAIT_MS)
    before = dot(page, bib, where)
    page.wait_for_function(
        """([where, bib, before]) => {
            const d = document.querySelector(`${where} .dot[data-bib="${bib}"]`);
            return d && (d.style.left !== before.left || d.style.top !== before.top);
        }""",
        arg=[where, bib, before],
        timeout=WAIT_MS,
    )


def expect_live(page: Page, transport: str, label: str) -> None:
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-phase", "live", timeout=WAIT_MS)
    expect(connection).to_have_attribute("data-transport", transport)
    expect(page.locator("#connection-text")).to_have_text(f"Live over {label}")
    expect(page.locator("#via")).to_have_text(re.compile(r"^from relay relay-\d+$"))


SPEEDS = """async () => {
  const { ReplayClock } = await import("/static/watch/replay.js");
  const clock = new ReplayClock(1_000_000, 1_200_000);
  clock.setSpeed(60);
  clock.play(0);
  clock.tick(1000);  // one second at 60x
  const out = [clock.t];
  clock.pause();
  clock.tick(5000);  // paused: no time passes
  out.push(clock.t);
  clock.play(5000);
  clock.tick(6000);
  out.push(clock.t);
  clock.tick(60000);  // past the end: it stops there
  out.push(clock.t, !clock.playing);
  return out;
}"""


def row(bib: int) -> str:
    return f'#board-rows tr[data-bib="{bib}"]'


def assert_readable(page: Page, selectors: list[str]) -> None:
    """Every kind of text named has at least WCAG AA contrast (4.5:1) where it is."""
    ratios = page.evaluate(CONTRAST, selectors)
    poor = {k: v for k, v in ratios.items() if v == "missing" or v < 4.5}
    assert not poor, poor


def live_selectors(race: RiddenRace) -> list[str]:
    leader, silent = race.riders[0].bib, race.silent.bib
    return [
        "#race-title",
        "#connection-text",
        "#freshness",
        "#via",
        ".race-when",
        ".board th",
        f"{row(leader)} td.name",
        f"{row(leader)} button.bib",
        f"{row(silent)} td.name",
        f"{row(silent)} td.gap",
        f'#map .dot[data-bib="{leader}"]',
        f'#map .dot[data-bib="{race.riders[-1].bib}"]',
        f'#map .dot[data-bib="{silent}"]',
        "#groups .bibs",
        "#groups .gap",
        ".dot-legend",
        ".crumbs a",
        "#splits-note",
    ]


# -- the tests -----------------------------------------------------------------------------


def test_a_spectator_registers_and_watches_the_live_race_over_webtransport(
    world: World, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page()
    register(page, world)
    race = world.race

    # The list: the ridden race is live, the uploaded one is past.
    live = page.locator("#live-races")
    expect(live.get_by_role("link", name=re.compile("Crit"))).to_be_visible()
    expect(
        page.locator("#past-races").get_by_role("link", name=re.compile("Hill climb"))
    ).to_be_visible()
    screenshot(page, tmp_path, "spectator-races")

    # Open the live race by keyboard.
    live.get_by_role("link", name=re.compile("Crit")).focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{world.url}/watch/{race.race_id}")
    expect(page.locator("#race-title")).to_have_text("Crit")
    expect_live(page, "webtransport", "WebTransport")

    leader, second, *_, last = race.riders
    wait_until_moved(page, leader.bib)
    everyone = [*race.riders, race.silent]
    expect(page.locator("#map .dot")).to_have_count(len(everyone))
    expect(page.locator("#profile .dot")).to_have_count(len(everyone))

    # The leaderboard: names from the start list, gaps, speed, distance to go, staleness.
    names = {
        r["bib"]: r["name"] for r in race.admin.get(f"/api/races/{race.race_id}/riders").json()
    }
    for bib, name in names.items():
        expect(page.locator(row(bib)).locator("td.name .who")).to_have_text(name, timeout=WAIT_MS)
    first = page.locator("#board-rows tr").first
    expect(first).to_have_attribute("data-bib", str(leader.bib))
    expect(first.locator("td.gap")).to_have_text("Leader")
    for rider in race.riders:
        expect(page.locator(row(rider.bib)).locator("td.speed")).to_have_text("36.0")
        expect(page.locator(row(rider.bib)).locator("td.to-go")).to_have_text(
            re.compile(r"^\d+\.\d km$")
        )
    expect(page.locator(row(last.bib)).locator("td.gap")).to_have_text(re.compile(r"^\+\d+:\d\d$"))
    silent = page.locator(row(race.silent.bib))
    expect(silent).to_have_class(re.compile(r"\bstale\b"))
    expect(silent.locator("td.status")).to_have_text(
        re.compile(r"^No signal · last fix \d+ s ago$")
    )
    expect(page.locator(f'#map .dot[data-bib="{race.silent.bib}"]')).to_have_class(
        re.compile(r"\bstale\b")
    )

    # Groups with their roles and time gaps: two in front, two chasing, one behind.
    groups = page.locator("#groups li")
    expect(groups).to_have_count(3)
    expect(groups.nth(0).locator(".bibs")).to_have_text(f"Bibs {leader.bib}, {second.bib}")
    expect(groups.nth(1).locator(".gap")).to_have_text(re.compile(r"^\+0:[23]\d$"))
    expect(groups.nth(2).locator("strong")).to_have_text("Straggler")

    # A rider picked on the leaderboard (by keyboard) stands out on the map.
    page.locator(row(second.bib)).get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(page.locator(f'#map .dot[data-bib="{second.bib}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    page.keyboard.press("Escape")
    expect(page.locator("#splits-note")).to_have_text(re.compile("This course has no checkpoints"))
    wait_until_moved(page, second.bib)
    assert_readable(page, live_selectors(race))
    screenshot(page, tmp_path, "spectator-live")


def test_without_webtransport_a_logged_in_spectator_watches_over_websocket_on_a_phone(
    world: World, open_page: OpenPage, tmp_path: Path
) -> None:
    name = register(open_page(), world)
    page = open_page(viewport=PHONE, init_script=NO_WEBTRANSPORT, color_scheme="dark")
    race = world.race
    log_in(page, world, name, f"/watch/{race.race_id}")
    assert page.evaluate("typeof window.WebTransport") == "undefined"
    expect_live(page, "websocket", "WebSocket")
    wait_until_moved(page, race.riders[0].bib)
    expect(page.locator("#board-rows tr")).to_have_count(len(race.riders) + 1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator(row(race.silent.bib))).to_have_class(re.compile(r"\bstale\b"))
    assert_readable(page, live_selectors(race))  # in the dark colour scheme
    screenshot(page, tmp_path, "spectator-live-phone")


def test_a_past_race_shows_results_stats_and_a_replay(
    world: World, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page()
    register(page, world)
    page.locator("#past-races").get_by_role("link", name=re.compile("Hill climb")).click()
    expect(page).to_have_url(f"{world.url}/watch/{world.past_race_id}/results")

    # Results: the winner, the pair split by a penalty, the fourth, the DNF.
    results = page.locator("#results-rows tr")
    expect(results).to_have_count(len(PAST_SPEEDS), timeout=WAIT_MS)
    expect(results.nth(0).locator("td.rank")).to_have_text("1")
    expect(results.nth(0).locator("td.gap")).to_have_text("")
    expect(results.nth(1).locator("td.gap")).to_have_text(re.compile(r"^\+0:\d\d$"))
    expect(results.nth(4).locator("td.status")).to_have_text("DNF")
    expect(results.nth(4).locator("td.rank")).to_have_text("\N{EN DASH}")
    penalised = page.locator("#results-rows tr", has_text="+10 s")
    expect(penalised).to_have_count(1)

    # Statistics and splits of every rider; the summary.
    expect(page.locator("#stats-rows tr")).to_have_count(len(PAST_SPEEDS))
    expect(page.locator("#stats-rows tr").first.locator("td.avg")).to_have_text(
        re.compile(r"^3[78]\.\d$")  # 10.5 m/s is 37.8 km/h
    )
    expect(page.locator("#splits-head th")).to_have_count(2 + 2 + 1)
    expect(page.locator("#summary dd").first).to_have_text(str(len(PAST_SPEEDS)))

    # Charts compare the first five riders.
    expect(page.locator("#gap-chart path.series")).to_have_count(len(PAST_SPEEDS))
    expect(page.locator("#speed-chart rect.bar:not(.thin)")).to_have_count(len(PAST_SPEEDS))

    # The replay: riders on the map at the start; played, they move; paused, they stop.
    winner = int(results.nth(0).get_attribute("data-bib") or 0)
    expect(page.locator("#replay-controls")).to_be_visible()
    page.wait_for_selector(f'#replay-map .dot[data-bib="{winner}"]', timeout=WAIT_MS)
    page.locator("#speed").select_option("10")  # the whole race in 24 s: time to pause it
    page.get_by_role("button", name="Play").click()
    wait_until_moved(page, winner, "#replay-map")
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    # The clock behind the speeds, with the time given: at 60x a second plays a minute.
    assert page.evaluate(SPEEDS) == [1_060_000, 1_060_000, 1_120_000, 1_200_000, True]
    # Scrub to the end by keyboard: everyone who finished is there.
    page.locator("#scrub").focus()
    page.keyboard.press("End")
    expect(page.locator("#moment li").first).to_have_text(re.compile("finished"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_readable(
        page,
        [
            "#results-rows td.name",
            "#results-rows tr.unplaced td.status",
            "#replay-clock",
            "#moment .where",
            "#replay-note",
            "#stats-rows td",
            "#splits-rows th",
            "#gap-chart figcaption",
            ".compare-riders label",
            ".banner",
            "#summary dt",
        ],
    )
    screenshot(page, tmp_path, "spectator-past")

    # On a phone the charts are drawn again at its width: nothing scrolls sideways.
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    page.wait_for_function(  # a function: a string would be eval'ed, which the CSP forbids
        "() => document.documentElement.scrollWidth <= window.innerWidth", timeout=WAIT_MS
    )
    expect(page.locator("#gap-chart > svg")).to_have_attribute("width", re.compile(r"^[1-3]\d\d$"))
    screenshot(page, tmp_path, "spectator-past-phone")


def test_a_live_race_no_relay_serves_says_so_and_shows_the_clouds_splits(
    world: World, open_page: OpenPage
) -> None:
    page = open_page()
    register(page, world)
    first, _ = world.unrelayed
    page.goto(f"{world.url}/watch/{first.race_id}")
    expect(page.locator("#race-title")).to_have_text("Night hill")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-phase", "reconnecting", timeout=WAIT_MS)
    expect(page.locator("#via")).to_have_text("no relay serves this race yet")
    expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    expect(page.locator("#map .course-line")).to_have_count(1)  # the course, even so

    # The splits come from the cloud's history: both passed the sprint and the hill's foot.
    splits = page.locator(".checkpoint-splits .split")
    expect(splits).to_have_count(2, timeout=WAIT_MS)  # once the cloud has answered
    sprint, hill = splits.nth(0), splits.nth(1)
    expect(sprint.locator("h3")).to_contain_text("Sprint")
    expect(sprint.locator(".note")).to_have_text("2 of 2 riders through")
    expect(sprint.locator("li").first).to_have_attribute("data-bib", str(first.bib))
    expect(sprint.locator("li").nth(1).locator(".time")).to_have_text(re.compile(r"^\+0:0\d$"))
    expect(hill.locator(".note")).to_have_text("2 of 2 riders through")


def test_an_upcoming_race_without_a_course_or_riders(world: World, open_page: OpenPage) -> None:
    created = world.race.admin.post(
        "/api/races", json={"name": "Next week", "starts_at": "2031-07-01T10:00:00Z"}
    )
    race_id = created.json()["id"]
    page = open_page()
    register(page, world)
    upcoming = page.locator("#upcoming-races").get_by_role("link", name=re.compile("Next week"))
    expect(upcoming).to_contain_text("no course yet")
    upcoming.click()
    expect(page).to_have_url(f"{world.url}/watch/{race_id}")
    expect(page.locator("#race-state")).to_have_text("Scheduled")
    expect(page.locator("#map .note")).to_have_text("This race has no course yet.")
    expect(page.locator("#via")).to_have_text("no relay serves this race yet", timeout=WAIT_MS)
    page.get_by_role("link", name="Results so far").click()
    expect(page.locator("#results-note")).to_have_text("Nobody raced.")
    expect(page.locator("#replay-note")).to_have_text(re.compile("nothing to replay"))
    expect(page.locator("#charts-note")).to_have_text("There is nobody to compare.")
    expect(page.locator(".banner")).to_have_text(re.compile("provisional"))


# -- the page's pure parts (no browser) -------------------------------------------------


def test_a_live_page_may_connect_to_its_relays_and_nowhere_else() -> None:
    relays: list[dict[str, Any]] = [
        {
            "status": {
                "webtransport_url": "https://Relay.example:443/live/",
                "page_url": "https://relay.example/",
            }
        },
        {
            "status": {
                "webtransport_url": "https://[::1]:4433/live/",
                "page_url": "http://[::1]:8080/",
            }
        },
        {
            "status": {
                "webtransport_url": "https://127.0.0.1:4433/live/",
                "page_url": "http://127.0.0.1:80/",
            }
        },
        {
            "status": {
                "webtransport_url": "javascript:alert(1)",
                "page_url": "http://x; script-src *:80/",
            }
        },
        {"status": {"webtransport_url": "http://plain.example/live/", "page_url": 7}},
        {"status": None},
    ]
    origins = relay_origins(relays)
    assert origins == [
        "https://relay.example",
        "wss://relay.example",
        "https://[::1]:4433",
        "ws://[::1]:8080",
        "https://127.0.0.1:4433",
        "ws://127.0.0.1",
    ]
    policy = live_policy(origins)
    assert f"connect-src 'self' {' '.join(origins)};" in policy
    assert "script-src 'self';" in policy
    assert live_policy([]).count("connect-src 'self';") == 1


def test_races_are_listed_live_upcoming_and_past() -> None:
    def race(race_id: int, state: str, starts: int) -> dict[str, object]:
        return {"id": race_id, "state": state, "starts_at_ms": starts}

    overview = [
        race(1, "published", 100),
        race(2, "live", 500),
        race(3, "scheduled", 900),
        race(4, "finished", 300),
        race(5, "neutralised", 400),
        race(6, "scheduled", 800),
    ]
    sections = {s["key"]: [r["id"] for r in s["races"]] for s in race_sections(overview)}
    assert sections == {"live": [5, 2], "upcoming": [6, 3], "past": [4, 1]}
