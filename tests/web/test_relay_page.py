"""The relay's spectator page in real headless Chromium, watching a race being ridden.

A real cloud and relay on loopback, riders uploading a fix a second over HTTP/3 (see
``tests/web/browser.py``), and the page the relay serves: over WebTransport, over the
WebSocket when the browser has no WebTransport or it fails, and through a relay restart;
the checkpoint splits panel filling as riders cross the course's lines.
Screenshots go to the test's tmp dir (and to docs/img/ with GRUPPETTO_SCREENSHOTS=1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.cloud.conftest import free_udp_port, start_cloud
from tests.edge_relay.harness import setup_relay_race
from tests.web.browser import RiddenRace, open_browser, ride_race, screenshot

WAIT_MS = 20_000
"""How long a wait for the page may take before the test fails (a deadline, not a
measurement: each wait ends as soon as its condition holds)."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

NO_WEBTRANSPORT = "delete window.WebTransport;"

LOSE_SNAPSHOT_DATAGRAMS = """
  window.lost = 0;
  window.resyncs = 0;
  const datagrams = Object.getOwnPropertyDescriptor(WebTransport.prototype, "datagrams");
  Object.defineProperty(WebTransport.prototype, "datagrams", {
    get() {
      const real = datagrams.get.call(this);
      this.lossy ??= real.readable.pipeThrough(new TransformStream({
        transform(chunk, out) {
          if (chunk[3] === 1) window.lost += 1;  // kind byte 1: a snapshot, lost
          else out.enqueue(chunk);
        },
      }));
      return { readable: this.lossy, writable: real.writable };
    },
  });
  const open = WebTransport.prototype.createUnidirectionalStream;
  WebTransport.prototype.createUnidirectionalStream = function (...args) {
    window.resyncs += 1;
    return open.apply(this, args);
  };
"""


def webtransport_to(port: int) -> str:
    """An init script that sends every WebTransport session to ``port`` (nothing there)."""
    return f"""
      const Real = window.WebTransport;
      window.WebTransport = class extends Real {{
        constructor(url, options) {{ super(url.replace(/:\\d+\\//, ":{port}/"), options); }}
      }};
    """


CHECKPOINTS = [
    {"name": "Sprint", "kind": "sprint", "distance_m": 1500.0},
    {"name": "Côte", "kind": "climb", "distance_m": 2000.0, "end_m": 2600.0},
    {"name": "Feed", "kind": "feed", "distance_m": 3400.0},
]
"""The circuit's lines. The riders (``tests/web/browser.py``: from 1,000, 985, 700, 690
and 400 m, at 10 m/s, 90 s before the page opens, for 330 s) cross one of them every
half-minute or sooner until the end, so a page open in between sees the splits fill."""
LINES = ["Sprint", "Côte", "Côte — top", "Feed"]
"""The splits panel's sections: every checkpoint and the climb's top, in course order."""


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RiddenRace]:
    tmp = tmp_path_factory.mktemp("web")
    cloud = start_cloud(tmp / "cloud")
    try:
        admin, race_id, credential = setup_relay_race(cloud, tmp)
        body = {"checkpoints": CHECKPOINTS}
        response = admin.put(f"/api/races/{race_id}/checkpoints", json=body)
        assert response.status_code == 200, response.text
        with ride_race(cloud, admin, race_id, credential, tmp) as ridden:
            yield ridden
            assert not ridden.errors, ridden.errors
    finally:
        cloud.stop()


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
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def dot(page: Page, bib: int, where: str = "map-riders") -> dict[str, str]:
    return page.evaluate(  # type: ignore[no-any-return]
        """([where, bib]) => {
            const d = document.querySelector(`#${where} .dot[data-bib="${bib}"]`);
            return d ? {left: d.style.left, top: d.style.top} : null;
        }""",
        [where, bib],
    )


def wait_until_moved(page: Page, bib: int) -> None:
    """Wait for rider ``bib``'s dot on the map to be somewhere else than it is now."""
    page.wait_for_selector(f'#map-riders .dot[data-bib="{bib}"]', timeout=WAIT_MS)
    before = dot(page, bib)
    page.wait_for_function(
        """([bib, before]) => {
            const d = document.querySelector(`#map-riders .dot[data-bib="${bib}"]`);
            return d && (d.style.left !== before.left || d.style.top !== before.top);
        }""",
        arg=[bib, before],
        timeout=WAIT_MS,
    )


def expect_live(page: Page, transport: str, label: str) -> None:
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-phase", "live", timeout=WAIT_MS)
    expect(connection).to_have_attribute("data-transport", transport)
    expect(page.locator("#connection-text")).to_have_text(f"Live over {label}")
    expect(page.locator("#connection [role=status]")).to_be_visible()


CONTRAST = """(selectors) => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const channel = (c) =>
    c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4;
  const luminance = ([r, g, b]) =>
    0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] === 1) return c;
      if (c[3] !== 0) return null;  // translucent: not measured here
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const selector of selectors) {
    const node = document.querySelector(selector);
    if (!node) { out[selector] = "missing"; continue; }
    const back = background(node);
    const [a, b] = [luminance(rgb(getComputedStyle(node).color)), luminance(back)];
    out[selector] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
}"""


def assert_readable(page: Page, race: RiddenRace) -> None:
    """Every kind of text on the race page has at least WCAG AA contrast (4.5:1)."""
    leader, silent = race.riders[0].bib, race.silent.bib
    selectors = [
        "#race-title",
        "#connection-text",
        "#freshness",
        "#relay",
        ".board th",
        f"{row(page, leader)} td.name",
        f"{row(page, leader)} button.bib",
        f"{row(page, silent)} td.name",
        f"{row(page, silent)} td.gap",
        f'#map-riders .dot[data-bib="{leader}"]',
        f'#map-riders .dot[data-bib="{race.riders[-1].bib}"]',
        f'#map-riders .dot[data-bib="{silent}"]',
        "#groups .bibs",
        "#groups .gap",
        ".legend",
        "a.back",
    ]
    ratios = page.evaluate(CONTRAST, selectors)
    poor = {k: v for k, v in ratios.items() if v == "missing" or v < 4.5}
    assert not poor, poor


def row(page: Page, bib: int) -> str:
    return f'#board-rows tr[data-bib="{bib}"]'


def test_spectator_watches_riders_move_over_webtransport(
    race: RiddenRace, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page()
    page.goto(race.url + "/")
    # Pick the race from the list, by keyboard.
    link = page.get_by_role("link", name=re.compile("Crit"))
    expect(link).to_be_visible(timeout=WAIT_MS)
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#race-title")).to_have_text("Crit")
    expect_live(page, "webtransport", "WebTransport")

    leader, second, *_, last = race.riders
    wait_until_moved(page, leader.bib)

    # Every rider is on the map and on the profile; the silent one greyed with its age.
    everyone = [*race.riders, race.silent]
    expect(page.locator("#map-riders .dot")).to_have_count(len(everyone))
    expect(page.locator("#profile-riders .dot")).to_have_count(len(everyone))
    expect(page.locator(f'#map-riders .dot[data-bib="{race.silent.bib}"]')).to_have_class(
        re.compile(r"\bstale\b")
    )
    silent = page.locator(row(page, race.silent.bib))
    expect(silent).to_have_class(re.compile(r"\bstale\b"))
    expect(silent.locator("td.status")).to_have_text(
        re.compile(r"^No signal · last fix \d+ s ago$")
    )
    expect(silent.locator("td.speed")).to_have_text("\N{EN DASH}")  # an old speed is no news

    # The leaderboard: names from the relay's standings, positions, gaps, speed, to go.
    with race.relay.client() as client:
        standings = client.get(f"/api/races/{race.race_id}/standings").json()
    for rider in standings["riders"]:
        expect(page.locator(row(page, rider["bib"])).locator("td.name .who")).to_have_text(
            rider["name"], timeout=WAIT_MS
        )
    first = page.locator("#board-rows tr").first
    expect(first).to_have_attribute("data-bib", str(leader.bib))
    expect(first.locator("td.pos")).to_have_text("1")
    expect(first.locator("td.gap")).to_have_text("Leader")
    for rider in race.riders:
        line = page.locator(row(page, rider.bib))
        expect(line.locator("td.speed")).to_have_text("36.0")
        expect(line.locator("td.to-go")).to_have_text(re.compile(r"^\d+\.\d km$"))
        expect(line.locator("td.status")).to_have_text("Racing")
    for rider in (second, last):
        gap = page.locator(row(page, rider.bib)).locator("td.gap")
        expect(gap).to_have_text(re.compile(r"^\+\d+:\d\d$"))
    expect(page.locator(row(page, last.bib)).locator("td.gap")).to_have_text(
        re.compile(r"^\+(0:5\d|1:0\d)$")
    )

    # Groups on the road with their time gaps: the two leaders, two chasers, a straggler.
    groups = page.locator("#groups li")
    expect(groups).to_have_count(3)
    expect(groups.nth(0).locator(".bibs")).to_have_text(f"Bibs {leader.bib}, {second.bib}")
    expect(groups.nth(1).locator(".gap")).to_have_text(re.compile(r"^\+0:[23]\d$"))
    expect(groups.nth(2).locator(".bibs")).to_have_text(f"Bibs {last.bib}")
    expect(page.locator("#race-status")).to_have_text("Live")

    # A rider picked on the leaderboard (by keyboard) stands out on the map.
    page.locator(row(page, second.bib)).get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(page.locator(f'#map-riders .dot[data-bib="{second.bib}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    page.keyboard.press("Escape")
    wait_until_moved(page, second.bib)
    assert_readable(page, race)
    screenshot(page, tmp_path, "relay-spectator")


SHOWN_SPLITS = """() => [...document.querySelectorAll("#splits .split")].map((section) => [
  section.querySelector("h3").firstChild.textContent,
  [...section.querySelectorAll("li")].map((item) => Number(item.dataset.bib)),
])"""


def relay_splits(race: RiddenRace) -> list[list[object]]:
    """The relay's splits as the panel should show them: each line's title and bibs."""
    with race.relay.client() as client:
        response = client.get(f"/api/races/{race.race_id}/splits")
    assert response.status_code == 200, response.text
    return [
        [
            f"{line['name']} — top" if line["top"] else line["name"],
            [a["bib"] for a in line["arrivals"]],
        ]
        for line in response.json()["checkpoints"]
    ]


def expect_splits_match_relay(page: Page, race: RiddenRace) -> None:
    """The panel shows what the relay says (a passage may land between the two reads)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        relay, shown = relay_splits(race), page.evaluate(SHOWN_SPLITS)
        if shown == relay or time.monotonic() > deadline:
            break
        page.wait_for_timeout(200)
    assert shown == relay


def assert_splits_readable(page: Page) -> None:
    selectors = [
        "#splits-title",
        "#splits .split h3",
        "#splits .split .kind",
        "#splits .split .through",
        "#splits li .pos",
        "#splits li .bib-label",
        "#splits li .who",
        "#splits li .time",
    ]
    ratios = page.evaluate(CONTRAST, selectors)
    poor = {k: v for k, v in ratios.items() if v == "missing" or v < 4.5}
    assert not poor, poor


def test_the_splits_panel_fills_as_riders_cross_the_lines(
    race: RiddenRace, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page()
    page.goto(f"{race.url}/#race/{race.race_id}")
    expect_live(page, "webtransport", "WebTransport")
    # Every checkpoint and the climb's top, in course order, with its kind and distance.
    expect(page.locator("#splits .split h3")).to_have_text(
        [
            "SprintSprint · 1.5 km",
            "CôteClimb · 2.0 km",
            "Côte — topClimb top · 2.6 km",
            "FeedFeed zone · 3.4 km",
        ],
        timeout=WAIT_MS,
    )
    expect(page.locator("#splits-note")).to_have_text("")
    # The breakaway and the chasers were through the sprint before the page opened.
    leader, second, chaser, other, _ = race.riders
    sprint = page.locator('#splits .split[data-line="Sprint|line"]')
    expect(sprint.locator("li")).not_to_have_count(0, timeout=WAIT_MS)
    assert sprint.locator("li").count() >= 4
    # Then more riders cross lines while the page is open: the panel fills by itself.
    before = page.locator("#splits li").count()
    page.wait_for_function(
        "n => document.querySelectorAll('#splits li').length > n", arg=before, timeout=60_000
    )
    expect_splits_match_relay(page, race)

    with race.relay.client() as client:
        standings = client.get(f"/api/races/{race.race_id}/standings").json()
    names = {r["bib"]: r["name"] for r in standings["riders"]}
    rows = sprint.locator("li")
    for i, rider in enumerate((leader, second, chaser, other)):
        expect(rows.nth(i)).to_have_attribute("data-bib", str(rider.bib))
        expect(rows.nth(i).locator(".pos")).to_have_text(f"{i + 1}.")
        expect(rows.nth(i).locator(".bib-label")).to_have_text(f"#{rider.bib}")
        expect(rows.nth(i).locator(".who")).to_have_text(names[rider.bib])
    # The first rider's time of day, then each one's gap to them.
    expect(rows.nth(0).locator(".time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(rows.nth(0).locator(".time")).to_have_attribute(
        "title", re.compile(r"^crossed at \d\d:\d\d:\d\d")
    )
    expect(rows.nth(1).locator(".time")).to_have_text(re.compile(r"^\+0:0[12]$"))
    expect(rows.nth(2).locator(".time")).to_have_text(re.compile(r"^\+0:(29|30|31)$"))
    everyone = len(race.riders) + 1  # and the silent rider
    expect(sprint.locator(".through")).to_have_text(
        re.compile(rf"^[4-5] of {everyone} riders through$")
    )
    assert_splits_readable(page)
    page.locator("#splits").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "relay-splits")


def test_the_splits_panel_reads_on_a_phone_over_websocket_in_the_dark(
    race: RiddenRace, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page(viewport=PHONE, init_script=NO_WEBTRANSPORT, color_scheme="dark")
    page.goto(f"{race.url}/#race/{race.race_id}")
    expect_live(page, "websocket", "WebSocket")
    expect(page.locator("#splits .split")).to_have_count(4, timeout=WAIT_MS)
    expect(page.locator("#splits li").first).to_be_visible(timeout=WAIT_MS)
    expect_splits_match_relay(page, race)
    # One column, nothing wider than the phone, every arrival's time within the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate(
        """() => [...document.querySelectorAll("#splits li .time")].every(
            (time) => time.getBoundingClientRect().right <= window.innerWidth)"""
    )
    assert_splits_readable(page)
    page.locator("#splits").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "relay-splits-phone")


RENDER_LONG_SPLITS = """async () => {
  // The shared module, as the cloud would use it: its per-rider stats turned into lines.
  const { renderSplits, splitsFromStats } = await import("/static/shared/splits.js");
  const box = document.createElement("div");
  box.id = "probe";
  box.className = "checkpoint-splits";
  document.querySelector("main").prepend(box);
  const start = Date.UTC(2024, 6, 14, 12, 0, 0);
  const stats = Array.from({ length: 14 }, (_, i) => ({
    rider_id: 100 + i,
    bib: i + 1,
    splits: [
      { name: "Sprint", kind: "sprint", distance_m: 1500, t_ms: start + 600000 + (13 - i) * 1000,
        elapsed_ms: 600000 + (13 - i) * 1000 },
      { name: "Feed", kind: "feed", distance_m: 3400, t_ms: null, elapsed_ms: null },
    ],
  }));
  const checkpoints = [
    { name: "Feed", kind: "feed", distance_m: 3400 },
    { name: "Sprint", kind: "sprint", distance_m: 1500 },
  ];
  const names = new Map(stats.map((r) => [r.bib, `Rider ${r.bib}`]));
  const splits = splitsFromStats(stats, checkpoints, names);
  const expanded = new Set();
  const draw = () => renderSplits(box, splits, { riders: 14, expanded, onToggle: draw });
  draw();
}"""


def test_a_long_list_of_arrivals_opens_and_closes_by_keyboard(
    race: RiddenRace, open_page: OpenPage
) -> None:
    page = open_page(viewport=PHONE)
    page.goto(race.url + "/")
    page.evaluate(RENDER_LONG_SPLITS)
    sprint, feed = page.locator("#probe .split").all()
    expect(sprint.locator("h3")).to_have_text("SprintSprint · 1.5 km")
    expect(feed.locator(".through")).to_have_text("Nobody has passed yet.")
    expect(sprint.locator(".through")).to_have_text("14 of 14 riders through")
    rows = sprint.locator("li")
    expect(rows).to_have_count(10)
    expect(rows.first).to_have_attribute("data-bib", "14")  # the first across the line
    expect(rows.first.locator(".who")).to_have_text("Rider 14")
    expect(rows.first.locator(".time")).to_have_attribute(
        "title", re.compile(r", race time 10:00$")
    )
    expect(rows.nth(1).locator(".time")).to_have_text("+0:01")
    button = sprint.get_by_role("button", name="Show all 14")
    expect(button).to_have_attribute("aria-expanded", "false")
    button.focus()
    page.keyboard.press("Enter")
    expect(rows).to_have_count(14)
    expect(rows.last.locator(".time")).to_have_text("+0:13")
    shut = sprint.get_by_role("button", name="Show the first 10")
    expect(shut).to_have_attribute("aria-expanded", "true")
    expect(shut).to_be_focused()  # the redraw keeps the focus where it was
    page.keyboard.press("Space")
    expect(rows).to_have_count(10)
    expect(sprint.get_by_role("button", name="Show all 14")).to_be_focused()


def test_without_webtransport_the_page_watches_over_websocket_on_a_phone(
    race: RiddenRace, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page(viewport=PHONE, init_script=NO_WEBTRANSPORT)
    page.goto(f"{race.url}/#race/{race.race_id}")
    expect_live(page, "websocket", "WebSocket")
    assert page.evaluate("typeof window.WebTransport") == "undefined"
    wait_until_moved(page, race.riders[0].bib)
    expect(page.locator("#board-rows tr")).to_have_count(len(race.riders) + 1)
    # Nothing wider than a phone: only the leaderboard's own region scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, tmp_path, "relay-spectator-phone")


def test_a_failing_webtransport_falls_back_to_websocket(
    race: RiddenRace, open_page: OpenPage
) -> None:
    page = open_page(init_script=webtransport_to(free_udp_port()), color_scheme="dark")
    page.goto(f"{race.url}/#race/{race.race_id}")
    expect_live(page, "websocket", "WebSocket")
    expect(page.locator("#connection")).to_have_attribute(
        "title", re.compile("^WebTransport failed")
    )
    wait_until_moved(page, race.riders[0].bib)
    expect(page.locator(row(page, race.silent.bib))).to_have_class(re.compile(r"\bstale\b"))
    assert_readable(page, race)  # in the dark colour scheme too


def test_a_lost_keyframe_is_asked_for_again(race: RiddenRace, open_page: OpenPage) -> None:
    # Every snapshot datagram is lost on the way: the deltas after it name a base the page
    # never got, so it writes "resync" on a stream and the relay sends the snapshot again.
    page = open_page(init_script=LOSE_SNAPSHOT_DATAGRAMS)
    page.goto(f"{race.url}/#race/{race.race_id}")
    expect_live(page, "webtransport", "WebTransport")
    page.wait_for_function("window.lost >= 1 && window.resyncs >= 1", timeout=WAIT_MS)
    wait_until_moved(page, race.riders[0].bib)
    expect(page.locator("#freshness")).to_have_text(re.compile(r"^Updated \d s ago$"))


def test_the_page_reconnects_when_the_relay_restarts(race: RiddenRace, open_page: OpenPage) -> None:
    # Last in this module: it restarts the module's relay (on the same ports and data).
    pages = {"webtransport": open_page(), "websocket": open_page(init_script=NO_WEBTRANSPORT)}
    labels = {"webtransport": "WebTransport", "websocket": "WebSocket"}
    for transport, page in pages.items():
        page.goto(f"{race.url}/#race/{race.race_id}")
        expect_live(page, transport, labels[transport])
    race.stop_relay()
    for page in pages.values():
        connection = page.locator("#connection")
        expect(connection).to_have_attribute("data-phase", "reconnecting", timeout=WAIT_MS)
        expect(page.locator("#connection-text")).to_have_text(
            re.compile(r"^Connection lost — reconnecting in \d+ s \(attempt \d+\)$")
        )
        expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    race.start_relay()
    for transport, page in pages.items():
        expect_live(page, transport, labels[transport])
        # The new relay process numbers its ticks from zero again: the page follows it.
        wait_until_moved(page, race.riders[0].bib)
