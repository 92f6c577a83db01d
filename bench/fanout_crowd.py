"""The Chromium crowd of ``bench.fanout``: thousands of browser WebTransport sessions.

Real spectators are browsers, and a browser's QUIC is C++: the sessions phase of
``bench.fanout`` can open its crowd from headless Chromium (the system ``/usr/bin/chromium``
under Playwright, as the browser tests do; never ``playwright install``) instead of aioquic
client processes, whose receive, decrypt and ACK in Python cost about as much per datagram
as the relay's own send.

Each page (on the relay's plain-HTTP origin: ``http://127.0.0.1`` is a secure context, so
``WebTransport`` is there) opens its share of the sessions to ``/live/RACE`` with
``serverCertificateHashes`` (the relay's self-signed certificate, ``/api/info``
``cert_sha256``), a few handshakes in flight at once, and gives up starting new ones when
the ramp budget is spent. A session drains the streams the relay opens (the base
snapshot) and, inside the measurement window, counts its datagrams and the frame tick each
carries (and, for the loss, the ticks read just before or after it): the same figures as
:mod:`bench.fanout_clients`' crowd. The tick is read from the frame's header (magic,
version, kind, then the race id and the tick as unsigned LEB128 varints:
``sync_protocol/frames.py``) without decoding the frame.

Why the pages, the flags and the nice (measured on the 2-core development machine):

* **Chromium throttles WebTransport handshakes per page** (``content/browser/webtransport/
  web_transport_throttle_context.cc``): while handshakes are pending a new one waits
  10 ms x 2^(pending - 1) (x 0.5-1.5), at most 64 may be pending, an established handshake
  stays pending 10 ms more, and a failed one stays pending for **5 minutes**. The first
  prototype (one page, 16 in flight) opened 493 of 500 at ~8 sessions/s: each of its 7
  failed handshakes stayed pending, and every later handshake of the page waited
  10 ms x 2^7 and more. 3 failures take one page from 64 to 22 sessions/s; the
  prototype with no failure opens 500 in 12.8 s (39/s).
  ``--webtransport-developer-mode`` drops the failure penalty (failures are still
  counted, with their reasons), and the crowd spreads its handshakes over
  :data:`PAGES_PER_BROWSER` pages a browser, :data:`IN_FLIGHT_PER_PAGE` in flight each.
  Opening is then bound by the relay (~12-15 ms of its CPU a handshake, Python TLS and
  HTTP/3) and, late in the ramp, by the crowd's CPU: 5,000 open in ~165 s, 120/s at
  first and 10-25/s with 4,000 sessions to serve.
* ``--single-process`` keeps the renderer and the network service in the browser process:
  a datagram reaches the page without crossing processes. CPU per datagram received at
  1 frame/s: 0.18-0.23 ms at 1,500-2,400 sessions (0.27 ms with Chromium's usual
  processes; 0.32-0.36 ms for the aioquic crowd), 0.13-0.15 ms at 5,000 sessions, where
  the datagrams come in bursts (the aioquic crowd: 0.22 ms at 4,000). Cheaper, not
  free: 5,000 sessions take ~2/3 of a core.
* **The crowd yields the CPU to the relay** (:func:`yield_cpu`, nice :data:`NICE` for the
  browser's session group). Linux shares the CPU between sessions' autogroups before
  threads, and Playwright starts each browser in a session of its own, as the benchmark
  starts the relay: the relay with its two fan-out workers got one core of the two while
  the crowd took the other, fell behind on its socket (200,000 datagrams dropped for a
  full receive buffer in a window), and handshakes failed from ~2,500 sessions on. With
  the crowd niced, the same run opened 4,971-4,979 of 5,000, every session at 1 frame/s.
  The crowd's reads and ACKs then wait while the relay needs the CPU: the figures count
  what reached the pages.
* At most :data:`SESSIONS_PER_BROWSER` sessions a browser: Chromium's network service
  allows 6,000 open UDP sockets and a WebTransport session is a QUIC connection of its
  own. A crowd of 5,000 is two browsers.

:func:`chromium_crowd` launches the browsers and pages, and closes them on the way out;
on an error, Ctrl-C or SIGTERM the Chromium processes still alive are killed by pid.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [  # tests/web/browser.py's flags, and the two explained above
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--webtransport-developer-mode",
    "--single-process",
]
SESSIONS_PER_BROWSER = 2_500
NICE = 10
"""The crowd's scheduling priority (its session's autogroup, and each thread)."""
PAGES_PER_BROWSER = 4
IN_FLIGHT_PER_PAGE = 4
"""Handshakes a page has in flight (Chromium's wait grows as 2^pending)."""
ATTEMPTS = 3
"""Handshakes a session tries before it counts as failed, 0.5 s then 1 s apart (the
spectator page reconnects too), while the ramp budget lasts."""
HANDSHAKE_TIMEOUT_S = 15.0
"""A session not open by then counts as failed (as in the aioquic crowd)."""
PROGRESS_S = 5.0
EDGE_S = 2.0
"""A tick read this close to the window, before or after it, still counts as received
(for ``datagram_loss_pct``, whose edge ticks are left out): a page reads a burst of
datagrams in turn, so a frame sent near an edge of the window is read inside it by some
of its sessions and outside it by others."""

Log = Callable[[str], None]

OPEN_JS = """
({url, hash, n, inFlight, deadline, timeoutMs, edgeMs, attempts}) => {
  const value = new Uint8Array(hash.match(/../g).map((h) => parseInt(h, 16)));
  const options = {serverCertificateHashes: [{algorithm: "sha-256", value}]};
  const crowd = {started: 0, opened: 0, failed: 0, failures: {}, sessions: [], done: false,
                 window: [Infinity, -Infinity], handshakes: [], retries: 0};
  window.crowd = crowd;
  const fail = (why, count = 1) => {
    const key = String(why).slice(0, 80);
    crowd.failures[key] = (crowd.failures[key] || 0) + count;
    crowd.failed += count;
  };
  const tick = (d) => {  // race id, then tick: unsigned LEB128 after magic, version, kind
    let pos = 4, v = 0;
    for (let k = 0; k < 2; k++) {
      v = 0;
      for (let scale = 1; pos < d.length; scale *= 128) {
        const b = d[pos++];
        v += (b & 0x7f) * scale;
        if (b < 0x80) break;
      }
    }
    return v;
  };
  const drain = async (readable) => {
    const reader = readable.getReader();
    for (;;) { if ((await reader.read()).done) return; }
  };
  const watch = async (s) => {
    const streams = s.wt.incomingBidirectionalStreams.getReader();
    for (;;) {
      const {value, done} = await streams.read();
      if (done) return;
      drain(value.readable).then(() => { s.joined = s.joined || performance.now(); },
                                 () => {});
    }
  };
  const count = async (s) => {
    const reader = s.wt.datagrams.readable.getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      const now = performance.now();
      if (now >= crowd.window[0] && now <= crowd.window[1]) {
        s.datagrams++;
        s.ticks.push(tick(value));
      } else if (now >= crowd.window[0] - edgeMs && now <= crowd.window[1] + edgeMs) {
        s.near.push(tick(value));
      }
    }
  };
  const open = async () => {
    let wt = null, timer = 0;
    const begun = performance.now();
    try {
      wt = new WebTransport(url, options);
      const expired = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("handshake timeout")), timeoutMs);
      });
      await Promise.race([wt.ready, expired]);
    } catch (e) {
      if (wt) { wt.ready.catch(() => {}); wt.closed.catch(() => {}); try { wt.close(); } catch {} }
      return `${e.name || "Error"}: ${e.message || e}`;
    } finally {
      clearTimeout(timer);
    }
    crowd.handshakes.push(performance.now() - begun);
    const s = {wt, datagrams: 0, ticks: [], near: [], joined: 0, closed: false};
    crowd.sessions.push(s);
    crowd.opened++;
    wt.closed.then(() => { s.closed = true; }, () => { s.closed = true; });
    watch(s).catch(() => {});
    count(s).catch(() => {});
    return null;
  };
  const session = async () => {  // as the spectator page does: try again, a while later
    for (let attempt = 1; ; attempt++) {
      const why = await open();
      if (why === null) return;
      if (attempt >= attempts || performance.now() > deadline) { fail(why); return; }
      crowd.retries++;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  };
  const worker = async () => {
    while (crowd.started < n) {
      if (performance.now() > deadline) {
        fail("ramp-timeout", n - crowd.started);
        crowd.started = n;
        return;
      }
      crowd.started++;
      await session();
    }
  };
  Promise.all(Array.from({length: inFlight}, worker)).then(() => { crowd.done = true; });
}
"""
PROGRESS_JS = """
(k) => [window.crowd.opened, window.crowd.failed, window.crowd.done,
        window.crowd.handshakes.slice(k), window.crowd.retries]
"""
FAILURES_JS = "() => window.crowd.failures"
WINDOW_JS = "(w) => { window.crowd.window = w; }"
REPORT_JS = """
() => window.crowd.sessions.map((s) => [s.datagrams, s.ticks, s.near, s.closed, s.joined])
"""
CLOSE_JS = """
() => { for (const s of window.crowd.sessions) { try { s.wt.close(); } catch {} } }
"""


@dataclass(frozen=True, slots=True)
class ChromiumPlan:
    """What the Chromium crowd opens."""

    origin_url: str
    """A page on the relay's plain-HTTP origin, where the crowd's pages live."""
    session_url: str
    """``https://127.0.0.1:PORT/live/RACE``: the relay's spectator port."""
    cert_sha256: str
    """The relay certificate's SHA-256, hex (``/api/info``)."""
    sessions: int
    ramp_s: float
    """Start no handshake after this long."""

    @property
    def browsers(self) -> int:
        return max(1, math.ceil(self.sessions / SESSIONS_PER_BROWSER))

    def shares(self) -> list[int]:
        """Sessions per page, every page of every browser."""
        pages = self.browsers * PAGES_PER_BROWSER
        base, extra = divmod(self.sessions, pages)
        return [base + (1 if i < extra else 0) for i in range(pages)]


@dataclass(frozen=True, slots=True)
class Opened:
    """How opening went."""

    opened: int
    failures: dict[str, int]
    """Reason -> sessions (``ramp-timeout``: never started, the ramp budget was spent)."""
    seconds: float
    handshake_ms: list[float]
    """How long each opened session's handshake took, sorted (Chromium's throttling
    included: from ``new WebTransport`` to ``ready``)."""
    retries: int = 0
    """Handshakes that failed and were tried again (a session fails after ATTEMPTS)."""


@dataclass(slots=True)
class _Page:
    page: Page
    sessions: int
    offset_ms: float = 0.0
    """``time.monotonic()`` x 1000 minus the page's ``performance.now()``."""
    handshake_ms: list[float] = field(default_factory=list)

    def to_page(self, monotonic_s: float) -> float:
        return monotonic_s * 1000 - self.offset_ms

    def to_monotonic(self, page_ms: float) -> float:
        return (page_ms + self.offset_ms) / 1000


@dataclass(slots=True)
class ChromiumCrowd:
    """Headless Chromium browsers whose pages hold the sessions."""

    plan: ChromiumPlan
    log: Log
    browsers: list[Browser] = field(default_factory=list)
    pages: list[_Page] = field(default_factory=list)
    window_end: float = 0.0

    def launch(self, playwright: Playwright) -> None:
        shares = iter(self.plan.shares())
        for _ in range(self.plan.browsers):
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            self.browsers.append(browser)
            yield_cpu(chromium_pids())  # before its pages: their threads inherit it
            context = browser.new_context()
            for _ in range(PAGES_PER_BROWSER):
                page = _Page(context.new_page(), next(shares))
                page.page.goto(self.plan.origin_url)
                before = time.monotonic()
                now_ms = float(page.page.evaluate("() => performance.now()"))
                page.offset_ms = (before + time.monotonic()) / 2 * 1000 - now_ms
                self.pages.append(page)

    def open(self) -> Opened:
        """Open the sessions; back when every page is done or gave up (bounded in time)."""
        plan = self.plan
        started = time.monotonic()
        deadline = started + plan.ramp_s
        for page in self.pages:
            page.page.evaluate(
                OPEN_JS,
                {
                    "url": plan.session_url,
                    "hash": plan.cert_sha256,
                    "n": page.sessions,
                    "inFlight": IN_FLIGHT_PER_PAGE,
                    "deadline": page.to_page(deadline),
                    "timeoutMs": HANDSHAKE_TIMEOUT_S * 1000,
                    "edgeMs": EDGE_S * 1000,
                    "attempts": ATTEMPTS,
                },
            )
        limit = deadline + HANDSHAKE_TIMEOUT_S + 15
        logged, marks = started, [0] * len(self.pages)
        while True:
            done = True
            opened = failed = retries = 0
            for page in self.pages:
                n_open, n_failed, page_done, handshakes, n_retries = page.page.evaluate(
                    PROGRESS_JS, len(page.handshake_ms)
                )
                opened, failed = opened + int(n_open), failed + int(n_failed)
                retries += int(n_retries)
                done = done and bool(page_done)
                page.handshake_ms.extend(float(ms) for ms in handshakes)
            now = time.monotonic()
            if done:
                break
            if now > limit:
                raise SystemExit("timed out waiting for the Chromium sessions to open")
            if now - logged >= PROGRESS_S:
                pairs = zip(self.pages, marks, strict=True)
                latest = sorted(ms for page, mark in pairs for ms in page.handshake_ms[mark:])
                self.log(
                    f"  chromium: {opened} of {plan.sessions} sessions open, {failed} failed "
                    f"({retries} handshakes tried again), "
                    f"{len(latest) / (now - logged):.0f}/s, handshakes "
                    f"p50 {latest[len(latest) // 2] if latest else math.nan:.0f} ms"
                )
                logged, marks = now, [len(page.handshake_ms) for page in self.pages]
            time.sleep(0.5)
        failures: dict[str, int] = {}
        for page in self.pages:
            for reason, n in page.page.evaluate(FAILURES_JS).items():
                failures[reason] = failures.get(reason, 0) + int(n)
        handshakes = sorted(ms for page in self.pages for ms in page.handshake_ms)
        return Opened(opened, failures, time.monotonic() - started, handshakes, retries)

    def set_window(self, start: float, end: float) -> None:
        """Count datagrams from ``start`` to ``end`` (monotonic seconds)."""
        self.window_end = end
        for page in self.pages:
            page.page.evaluate(WINDOW_JS, [page.to_page(start), page.to_page(end)])

    def reports(self) -> list[dict[str, Any]]:
        """Each session's figures, in :mod:`bench.fanout_clients`' report shape (and
        ``ticks_near``: the ticks read up to :data:`EDGE_S` before or after the window)."""
        time.sleep(max(0.0, self.window_end + EDGE_S - time.monotonic()))
        out = []
        for page in self.pages:
            for datagrams, ticks, near, closed, joined in page.page.evaluate(REPORT_JS):
                out.append(
                    {
                        "datagrams": int(datagrams),
                        "ticks": [int(t) for t in ticks],
                        "ticks_near": [int(t) for t in near],
                        "closed": bool(closed),
                        "joined": page.to_monotonic(joined) if joined else 0.0,
                    }
                )
        return out

    def pids(self) -> list[int]:
        """The Chromium processes of this crowd."""
        return chromium_pids()

    def close(self, graceful: bool) -> None:
        """Close the sessions (the relay sees them go) and the browsers; kill what is left."""
        if graceful:
            for page in self.pages:
                with contextlib.suppress(Exception):
                    page.page.evaluate(CLOSE_JS)
        else:  # after an error or an interrupt: do not wait on them
            _kill(chromium_pids())
        for browser in self.browsers:
            with contextlib.suppress(Exception):
                browser.close()
        _kill(chromium_pids())


@contextlib.contextmanager
def chromium_crowd(plan: ChromiumPlan, log: Log) -> Iterator[ChromiumCrowd]:
    """Browsers with their pages, ready to :meth:`~ChromiumCrowd.open`; closed on the way
    out, and on an error, Ctrl-C or SIGTERM their processes killed."""
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install chromium, or run with --crowd python")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("playwright is not installed: pip install -e '.[dev]'") from None
    log(
        f"sessions: launching {plan.browsers} Chromium browser(s), "
        f"{PAGES_PER_BROWSER} pages each, {IN_FLIGHT_PER_PAGE} handshakes in flight a page"
    )
    crowd = ChromiumCrowd(plan, log)
    graceful = False
    try:
        with sync_playwright() as playwright:
            try:
                crowd.launch(playwright)
                yield crowd
                graceful = True
            finally:
                crowd.close(graceful)
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(f"the Chromium crowd failed: {first}") from None
    finally:
        _kill(chromium_pids())


def chromium_pids() -> list[int]:
    """Chromium processes descended from this one (Playwright's driver starts them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            if Path(os.readlink(f"/proc/{pid}/exe")).name in ("chromium", "chrome"):
                found.append(pid)
    return found


def yield_cpu(pids: list[int], nice: int = NICE) -> None:
    """Give these processes' session group, and each of their threads, ``nice``.

    With autogroups (``/proc/sys/kernel/sched_autogroup_enabled``), the kernel shares the
    CPU equally between sessions first, and a thread's nice only counts inside its own
    session. Playwright starts a browser in a session of its own, and the relay runs in
    another: without this, the relay with all its fan-out workers got one core of two
    whenever the crowd was busy. Threads created later inherit their creator's nice.
    """
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def rss_mb(pids: list[int]) -> float:
    """Resident MiB of these processes together."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return round(total * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
