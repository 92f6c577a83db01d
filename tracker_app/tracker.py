"""The running tracker: readings in, fixes recorded durably, the uploader kept busy.

:class:`Recorder` turns each reading into the next fix, extends the chain
(``Sender.record``) and commits fix, chain hash and sender state in one transaction
before anything else may happen to it. :class:`Tracker` runs the recorder over a
position source next to the :class:`~tracker_app.sync.Uploader`, passes the source's
coverage flag on (a simulated dropout pauses the link) and reports a :class:`Status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from sync_protocol.errors import InvalidFixError
from sync_protocol.fix import Fix
from sync_protocol.sender import Sender, SenderState

from .account import Account, check_race, load, race_course
from .battery import Battery, open_battery
from .errors import StorageFull, TrackerError
from .h3client import Endpoint, Radio, Tickets
from .hops import Backoff, Hop, HopList, Link, wall_ms
from .status import Status, describe, render, saved_races
from .store import Budget, FixStore
from .sync import Uploader

BUFFER_FILE = "fixes.db"
DISCOVERY_WAIT_S = 3.0
"""At start, how long to look for a relay before uploading to the cloud instead."""

log = logging.getLogger("gruppetto.tracker")


class Reading(Protocol):
    """What the tracker needs of a position reading (``tracker_app.sources.Reading``)."""

    @property
    def coverage(self) -> bool:
        """Whether the radio has coverage at this point (False in a simulated dropout)."""

    @property
    def quality(self) -> object:
        """Fix quality as the source names it."""

    @property
    def satellites(self) -> int | None:
        """Satellites used, when known."""

    @property
    def hacc_m(self) -> float | None:
        """Horizontal accuracy in metres, when known."""

    def to_fix(self, seq: int) -> Fix:
        """The reading as fix number ``seq``; InvalidFixError when it cannot be one."""


class Recorder:
    """Records readings as fixes: durable in the store before they count."""

    def __init__(self, store: FixStore, sender: Sender, on_recorded: Callable[[], None]) -> None:
        self.store = store
        self.sender = sender
        self.on_recorded = on_recorded
        self.skipped = 0
        """Readings that could not be fixes (out of range, implausible jump, time backwards)."""
        self.not_recorded = 0
        """Readings dropped because the storage budget was full."""
        self.warning = ""
        """The storage warning, if any."""
        self.last: Reading | None = None
        """The last reading seen."""

    def record(self, reading: Reading) -> Fix | None:
        """Record ``reading`` as the next fix; None when it is skipped or storage is full."""
        self.last = reading
        try:
            usage = self.store.make_room()
        except StorageFull as exc:
            self.not_recorded += 1
            self.warning = exc.message
            return None
        self.warning = usage.warning
        try:
            fix = reading.to_fix(self.sender.state.recorded_seq + 1)
            chain_hash = self.sender.record(fix)
        except InvalidFixError as exc:
            self.skipped += 1
            log.info("reading skipped: %s", exc.message)
            return None
        try:
            self.store.record(fix, chain_hash, self.sender.state)
        except BaseException:
            # Not recorded: the sender goes back to what is on disk.
            self.sender.state = SenderState.from_bytes(self.store.state.to_bytes())
            raise
        self.on_recorded()
        return fix


class Tracker:
    """One racer's tracker for one race: recorder, uploader, status."""

    def __init__(
        self,
        account: Account,
        store: FixStore,
        hops: HopList,
        *,
        radio: Radio | None = None,
        tickets: Tickets | None = None,
        now_ms: Callable[[], int] = wall_ms,
        backoff: Backoff | None = None,
        tick_s: float = 1.0,
        request_timeout_s: float = 10.0,
        battery: Battery | None = None,
    ) -> None:
        self.account = account
        self.store = store
        self.now_ms = now_ms
        self.sender = Sender(SenderState.from_bytes(store.state.to_bytes()))
        self.uploader = Uploader(
            sender=self.sender,
            store=store,
            key=account.key,
            certificate=account.certificate,
            hops=hops,
            radio=radio,
            tickets=tickets,
            now_ms=now_ms,
            backoff=backoff,
            tick_s=tick_s,
            request_timeout_s=request_timeout_s,
            battery=battery,
        )
        self.recorder = Recorder(store, self.sender, self.uploader.wake)
        self.gps_quality: Callable[[], object] | None = None
        """The source's current fix quality (``no-fix`` while searching), when it says."""

    def status(self) -> Status:
        """A snapshot for the status line."""
        last, up = self.recorder.last, self.uploader
        quality = self.gps_quality() if self.gps_quality else None
        if quality is None and last is not None:
            quality = last.quality
        level = up.battery.read() if up.battery is not None else None
        battery = ""
        if level is not None:
            battery = f"{level.percent}%" + (" charging" if level.charging else "")
        return Status(
            gps="-" if quality is None else str(getattr(quality, "value", quality)),
            satellites=None if last is None else last.satellites,
            hacc_m=None if last is None else last.hacc_m,
            recorded=self.sender.state.recorded_seq,
            waiting=self.sender.waiting,
            acked_seq=self.sender.state.acked_seq,
            last_ack_ms=up.last_ack_ms,
            link=str(up.link),
            hop=up.hop.name if up.hop else "",
            coverage=up.coverage,
            wakeups=up.radio.wakeups,
            warning=self.recorder.warning or up.last_error,
            battery=battery,
        )

    async def run(
        self,
        readings: AsyncIterable[Reading],
        *,
        on_status: Callable[[Status], None] | None = None,
        status_every_s: float = 1.0,
        drain_s: float = 60.0,
    ) -> None:
        """Track until the source ends (then sync what is left, up to ``drain_s``)."""
        upload = asyncio.create_task(self.uploader.run(), name="uploader")
        show = asyncio.create_task(self._show(on_status, status_every_s), name="status")
        try:
            async for reading in readings:
                self.uploader.set_coverage(reading.coverage)
                self.recorder.record(reading)
                if upload.done():
                    upload.result()  # the uploader died: surface why
            self.uploader.set_coverage(True)
            self.uploader.flush()
            await self.uploader.wait_until(lambda: self.sender.waiting == 0, drain_s)
        finally:
            for task in (show, upload):
                task.cancel()
            for task in (show, upload):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if on_status is not None:
                on_status(self.status())

    async def _show(self, on_status: Callable[[Status], None] | None, every_s: float) -> None:
        if on_status is None:
            return
        while True:
            on_status(self.status())
            await asyncio.sleep(every_s)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``gruppetto tracker run`` was asked to do."""

    race_id: int
    """The race to track."""
    source: str
    """The SOURCE spec (``gpsd``, ``nmea:PATH``, ``gpx:PATH``, ``fit:PATH``, ``sim``)."""
    data_dir: Path
    """The tracker's data directory."""
    relay: str | None = None
    """A relay's URL given by hand, ``https://HOST:PORT``."""
    relay_pin: str | None = None
    """SHA-256 (hex) of that relay's certificate."""
    speed: float = 1.0
    """Replay speed of file sources."""
    budget_bytes: int = 64 * 1024 * 1024
    """Storage budget of the fix buffer."""
    seed: int = 0
    """Seed of the simulated rider."""
    interfaces: Sequence[str] = ("127.0.0.1",)
    """Addresses to discover relays on (empty: no discovery)."""
    battery: str = "auto"
    """The BATTERY spec (``auto``, ``sysfs[:DIR]``, ``sim``, ``none``)."""


def relay_hop(url: str, pin: str | None) -> Hop:
    """A hop for ``--relay URL`` (pinned with ``--relay-pin``)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not parts.port:
        raise TrackerError(f"--relay must look like https://HOST:PORT, not {url!r}")
    digest: bytes | None = None
    if pin:
        try:
            digest = bytes.fromhex(pin.replace(":", ""))
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise TrackerError("--relay-pin must be the 64 hex digits of a SHA-256")
    endpoint = Endpoint(parts.hostname, parts.port, pin_sha256=digest)
    return Hop(Link.RELAY, parts.netloc, endpoint)


def cloud_hop(account: Account) -> Hop | None:
    """The cloud's HTTP/3 endpoint, when it has one (learned at login)."""
    if account.h3_port is None or not account.server.startswith("https://"):
        return None
    cadata = account.cafile.read_bytes() if account.cafile else None
    endpoint = Endpoint(account.host, account.h3_port, cadata=cadata)
    return Hop(Link.CLOUD, account.host, endpoint)


async def run_tracker(options: RunOptions, show: Callable[[str], None]) -> None:
    """Everything ``tracker run`` does; TrackerError for what the racer must fix."""
    account = load(options.data_dir)
    check_race(account, options.race_id, wall_ms())

    from .discovery import RelayBrowser
    from .sources import SourceError, SystemClock, open_source

    course = race_course(options.data_dir, options.race_id)
    battery = open_battery(
        options.battery,
        source=options.source,
        seed=options.seed,
        speed=options.speed,
        now_ms=wall_ms,
    )
    try:
        source = open_source(
            options.source,
            clock=SystemClock(),
            speed=options.speed,
            course=course,
            seed=options.seed,
        )
    except SourceError as exc:
        raise TrackerError(str(exc)) from None
    relays = [relay_hop(options.relay, options.relay_pin)] if options.relay else []
    cloud = cloud_hop(account)
    if not relays and not options.interfaces and cloud is None:
        raise TrackerError(
            "nowhere to upload: the cloud has no HTTP/3 endpoint and relay discovery is off; "
            "give --relay URL or turn discovery on"
        )
    store = FixStore(
        options.data_dir / BUFFER_FILE,
        account.certificate.device_id,
        Budget(max_bytes=options.budget_bytes),
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            browser = None
            if options.interfaces:
                try:
                    browser = await stack.enter_async_context(RelayBrowser(options.interfaces))
                except OSError as exc:
                    raise TrackerError(
                        f"cannot look for relays: {exc.strerror}; give --interface with this "
                        "device's address on the event network, or --no-discover"
                    ) from None
                if not relays:  # look around briefly before settling for the cloud
                    race_id = options.race_id
                    await browser.wait_until(
                        lambda found: any(a.serves(race_id) for a in found.values()),
                        DISCOVERY_WAIT_S,
                    )
            adverts = (lambda: list(browser.relays.values())) if browser else None
            hops = HopList(relays=relays, cloud=cloud, adverts=adverts, race_id=options.race_id)
            tracker = Tracker(account, store, hops, battery=battery)
            tracker.gps_quality = lambda: source.stats.quality
            stack.callback(source.close)
            await tracker.run(
                source.readings(), on_status=lambda status: show(render(status, wall_ms()))
            )
            if tracker.sender.waiting:
                show(
                    f"{tracker.sender.waiting:,} fixes are not acked yet: they stay in the "
                    "buffer and go with the next `gruppetto tracker run`"
                )
    finally:
        store.close()


def describe_tracker(data_dir: Path) -> list[str]:
    """What ``tracker status`` prints."""
    account = load(data_dir)
    path = data_dir / BUFFER_FILE
    if not path.exists():
        return describe(account, None, saved_races(data_dir))
    store = FixStore(path, account.certificate.device_id)
    try:
        return describe(account, store, saved_races(data_dir))
    finally:
        store.close()
