"""The client processes of ``bench.fanout``: riders uploading, spectators watching.

Each entry point runs in its own process with its own asyncio loop (one Python process
cannot drive thousands of QUIC connections and keep its timestamps honest):

* :func:`riders_main` — every rider on its own QUIC connection to the relay, a session
  hello, then one fix a second, sent on the UTC second as a GPS receiver fixes, as a
  1-fix batch in the protocol's live mode (session MAC, a signed head every 10th fix).
  It records, for each fix, its position and when the request left and the ack came back.
* :func:`spectators_main` — many WebTransport sessions (extended CONNECT to
  ``/live/RACE``), opened a few at a time. Every session counts the datagrams it gets
  inside a measurement window and the frame ticks they carry (for loss); a few
  "decoding" sessions also decode every frame against its base and note when each rider
  position first shows.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for every process of the
machine, so a send time in one process and a receive time in another can be subtracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import device_id, extend, genesis, public_key_bytes
from sync_protocol.fix import Fix
from sync_protocol.frames import FrameKind, LiveFrame, decode_frame, peek_kind
from sync_protocol.framing import encode_frames
from sync_protocol.session import SessionHello
from sync_protocol.upload import HelloReply, decode_results

from .fanout_setup import RiderSpec, circuit

SEAL_EVERY = 10
"""A signed head every this many live fixes (the others carry the session MAC)."""
UPLOAD_TIMEOUT_S = 5.0
"""An upload with no answer by then: the tracker connects again."""

Sent = tuple[int, int, int, float, float, str]
"""(bib, lat_e7, lon_e7, monotonic sent, monotonic acked, refusal reason or "")."""


def _config() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        verify_mode=ssl.CERT_NONE,  # loopback, the relay's self-signed certificate
        max_datagram_frame_size=65_536,
    )


def _quiet_exit() -> None:
    """Ctrl-C belongs to the benchmark's main process; it stops this one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- riders ------------------------------------------------------------------------------


class Uploader(QuicConnectionProtocol):
    """One tracker's QUIC connection: HTTP/3 requests, one at a time or more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self._waiting: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._replies: dict[int, tuple[int, bytearray]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            for done in self._waiting.values():
                if not done.done():
                    done.set_exception(ConnectionError(f"connection closed: {event.reason_phrase}"))
            self._waiting.clear()
        for h3_event in self.http.handle_event(event):
            self._reply(h3_event)

    def _reply(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        status, body = self._replies.setdefault(event.stream_id, (0, bytearray()))
        if isinstance(event, HeadersReceived):
            status = int(dict(event.headers).get(b":status", b"0"))
        else:
            body += event.data
        self._replies[event.stream_id] = (status, body)
        if event.stream_ended:
            status, body = self._replies.pop(event.stream_id)
            done = self._waiting.pop(event.stream_id, None)
            if done is not None and not done.done():
                done.set_result((status, bytes(body)))

    async def post(self, path: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
        stream = self._quic.get_next_available_stream_id()
        self.http.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b":path", path.encode()),
                (b"content-type", b"application/vnd.gruppetto"),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        self.http.send_data(stream, body, end_stream=True)
        done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[stream] = done
        self.transmit()
        return await asyncio.wait_for(done, timeout)


class Rider:
    """A device riding the circuit: its key, chain, session and what the relay acked."""

    def __init__(self, spec: RiderSpec, start_ms: int) -> None:
        self.spec = spec
        self.start_ms = start_ms
        self.key = Ed25519PrivateKey.from_private_bytes(spec.key)
        self.certificate = DeviceCertificate.decode(spec.certificate)
        self.device = device_id(public_key_bytes(self.key))
        self.session_key = os.urandom(32)
        self.fixes: list[Fix] = []
        self.hashes = [genesis(self.device)]
        self.verified = 0
        """Newest seq the relay holds verified (signed)."""
        self.acked = 0
        """Newest seq the relay holds, provisional (MAC'd) ones included."""
        self.resend = True
        """Next batch signed, from ``verified + 1``: first, after a new hello or a refusal."""
        self.course = circuit()

    def hello(self) -> bytes:
        """A new session: a fresh session key, signed by the device."""
        self.session_key = os.urandom(32)
        t_ms = time.time_ns() // 1_000_000
        return SessionHello.create(self.key, self.certificate, self.session_key, t_ms).encode()

    def hello_reply(self, body: bytes) -> None:
        ack = HelloReply.decode(body).ack
        self.verified = self.acked = ack.acked_seq
        self.resend = True

    def next_batch(self, t_ms: int) -> tuple[Fix, bytes]:
        """Record the fix at ``t_ms`` (where the rider is then); the upload that carries it.

        Live mode: a 1-fix batch under the session MAC, a signed head every
        :data:`SEAL_EVERY` fixes; after a new hello, everything past the verified head,
        signed.
        """
        spec = self.spec
        along = spec.offset_m + spec.speed_ms * (t_ms - self.start_ms) / 1000
        lat, lon, _ = self.course.point_at(min(along, self.course.total_length_m))
        seq = len(self.fixes) + 1
        fix = Fix(
            seq,
            t_ms,
            round(lat * 1e7),
            round(lon * 1e7),
            ele_dm=5_000,
            speed_cms=round(spec.speed_ms * 100),
        )
        self.fixes.append(fix)
        self.hashes.append(extend(self.hashes[-1], fix))
        if self.resend or seq % SEAL_EVERY == 0:
            first = self.verified + 1
            batch = seal(self.device, self.fixes[first - 1 :], self.hashes[first - 1], key=self.key)
        else:
            first = self.acked + 1
            batch = seal(
                self.device,
                self.fixes[first - 1 :],
                self.hashes[first - 1],
                session_key=self.session_key,
            )
        return fix, encode_frames([encode_batch(batch)])

    def reply(self, status: int, body: bytes) -> str:
        """Take the relay's answer; the refusal reason, or "" when stored."""
        if status != 200:
            self.resend = True
            return f"http-{status}"
        (result,) = decode_results(body)
        if result.ack is not None:
            self.verified = result.ack.acked_seq
            self.acked = max(result.ack.acked_seq, result.ack.provisional_seq)
        self.resend = result.refused or self.acked < len(self.fixes)
        return result.reason


def riders_main(
    port: int,
    specs: list[RiderSpec],
    start_ms: int,
    stop: Event,
    results: Queue[Any],
) -> None:
    """Process entry: upload one fix a second per rider until ``stop`` is set.

    A rider whose upload gets no answer in :data:`UPLOAD_TIMEOUT_S` does what a tracker
    does: a new connection, a new hello, and what the relay does not hold, signed.
    """
    _quiet_exit()
    sent: list[Sent] = []
    errors: Counter[str] = Counter()

    async def session(rider: Rider, ready: asyncio.Event, go: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(UPLOAD_TIMEOUT_S * 2):
                conn = await stack.enter_async_context(
                    connect("127.0.0.1", port, configuration=_config(), create_protocol=Uploader)
                )
                client = cast(Uploader, conn)
                status, body = await client.post("/v1/hello", rider.hello())
            if status != 200:
                raise ConnectionError(f"hello refused: {status} {body[:200]!r}")
            rider.hello_reply(body)
            ready.set()
            await go.wait()
            while not stop.is_set():
                now = time.time()
                await asyncio.sleep(int(now) + 1 - now)  # the next UTC second
                fix, body = rider.next_batch((int(now) + 1) * 1000)
                t_sent = time.monotonic()
                status, reply = await client.post("/v1/batches", body, UPLOAD_TIMEOUT_S)
                reason = rider.reply(status, reply)
                if reason:
                    errors[reason] += 1
                sent.append(
                    (rider.spec.bib, fix.lat_e7, fix.lon_e7, t_sent, time.monotonic(), reason)
                )

    async def ride(spec: RiderSpec, ready: asyncio.Event, go: asyncio.Event) -> None:
        rider = Rider(spec, start_ms)
        while not stop.is_set():
            try:
                await session(rider, ready, go)
            except (TimeoutError, ConnectionError, OSError) as exc:
                errors[f"reconnect:{type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(_ignore_lost_connections)
        go = asyncio.Event()
        readies = [asyncio.Event() for _ in specs]
        tasks = [asyncio.create_task(ride(s, r, go)) for s, r in zip(specs, readies, strict=True)]
        deadline = time.monotonic() + 60
        while not all(r.is_set() for r in readies) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not all(r.is_set() for r in readies):
            results.put(("error", f"session hellos not answered in 60 s: {dict(errors)}"))
            stop.set()
        else:
            results.put(("ready",))
            go.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await asyncio.wait(tasks, timeout=10)
        for t in tasks:
            t.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    results.put(("done", sent, dict(errors)))


def _ignore_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aioquic leaves a failed handshake's ConnectionError in a future nobody awaits."""
    if isinstance(context.get("exception"), ConnectionError):
        return
    loop.default_exception_handler(context)


# -- spectators --------------------------------------------------------------------------


@dataclass(slots=True)
class Window:
    """The measurement window, in monotonic seconds (infinite until the main says)."""

    start: float = float("inf")
    end: float = float("-inf")


@dataclass(slots=True)
class SessionStats:
    """One session's figures."""

    status: int = 0
    datagrams: int = 0
    """Datagrams received inside the window."""
    ticks: set[int] = field(default_factory=set)
    """Frame ticks of those datagrams."""
    joined: float = 0.0
    """When the session's first frame (the base, on a stream) arrived."""
    seen: dict[tuple[int, int, int], float] = field(default_factory=dict)
    """Decoding sessions: (bib, lat_e7, lon_e7) -> when it first showed."""
    riders: int = 0
    """Decoding sessions: riders in the last frame decoded."""
    undecodable: int = 0
    """Decoding sessions: frames that did not decode (a delta with no base)."""
    closed: bool = False


class Watcher(QuicConnectionProtocol):
    """A browser-like WebTransport session watching one race."""

    window: Window
    decode: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic, enable_webtransport=True)
        self.session_id = -1
        self.stats = SessionStats()
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.streams: dict[int, bytes] = {}
        self.base: LiveFrame | None = None
        self.backlog: list[tuple[bytes, float]] = []
        """Decoding sessions: frames received, with when, not yet decoded."""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.stats.closed = True
            if not self.status.done():
                self.status.set_result(0)
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, DatagramReceived):
                self._datagram(h3_event.data)
            elif isinstance(h3_event, WebTransportStreamDataReceived):
                data = self.streams.get(h3_event.stream_id, b"") + h3_event.data
                self.streams[h3_event.stream_id] = data
                if h3_event.stream_ended:
                    del self.streams[h3_event.stream_id]
                    if not self.stats.joined:
                        self.stats.joined = time.monotonic()
                    if self.decode:
                        self._later(data, time.monotonic())
            elif (
                isinstance(h3_event, HeadersReceived)
                and h3_event.stream_id == self.session_id
                and not self.status.done()
            ):
                self.status.set_result(int(dict(h3_event.headers).get(b":status", b"0")))

    def _datagram(self, data: bytes) -> None:
        now = time.monotonic()
        window = self.window
        if window.start <= now <= window.end:
            self.stats.datagrams += 1
            self.stats.ticks.add(frame_tick(data))
        if self.decode:
            self._later(data, now)

    def _later(self, data: bytes, now: float) -> None:
        """Decode after the loop has taken in what else arrived: a browser decodes each
        frame in a fraction of a millisecond, but 20 sessions decoding in Python in one
        process would stamp the twentieth session's frames ~20 decodes late. The frame is
        stamped when it arrived; decoding it later changes nothing it shows."""
        self.backlog.append((data, now))
        if len(self.backlog) == 1:
            asyncio.get_running_loop().call_later(LATER_S, self._drain)

    def _drain(self) -> None:
        backlog, self.backlog = self.backlog, []
        for data, now in backlog:
            self._decode(data, now)

    def _decode(self, data: bytes, now: float) -> None:
        stats = self.stats
        try:
            frame = decode_frame(data, self.base)
        except Exception:
            stats.undecodable += 1
            return
        if peek_kind(data) is FrameKind.SNAPSHOT:
            self.base = frame
        stats.riders = len(frame.riders)
        for rider in frame.riders:
            stats.seen.setdefault((rider.bib, rider.lat_e7, rider.lon_e7), now)

    async def open(self, path: str) -> int:
        """Extended CONNECT (``:protocol webtransport``); the response status."""
        self.session_id = self._quic.get_next_available_stream_id()
        self.http.send_headers(
            self.session_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b":path", path.encode()),
                (b"sec-webtransport-http3-draft02", b"1"),
            ],
        )
        self.transmit()
        self.stats.status = await self.status
        return self.stats.status


def frame_tick(data: bytes) -> int:
    """A live frame's tick, read from its header only (magic, version, kind, race, tick)."""
    pos, value = 4, 0
    for _ in range(2):  # race_id, then tick: unsigned LEB128 varints
        value, shift = 0, 0
        while pos < len(data):
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
    return value


@dataclass(frozen=True, slots=True)
class CrowdPlan:
    """What one spectator process does."""

    worker: int
    port: int
    race_id: int
    sessions: int
    decoding: int
    """How many of its sessions decode every frame (the others only count them)."""
    concurrency: int
    """Handshakes in flight at once."""
    ramp_s: float
    """Give up opening sessions after this long."""


LATER_S = 0.2
"""Decoding sessions decode what arrived this long after its first frame, in one go."""
GRACE_S = 2.0
"""Decoding sessions keep noting positions this long after the window (late frames)."""
LAG_PROBE_S = 0.05


def spectators_main(plan: CrowdPlan, control: Queue[Any], results: Queue[Any]) -> None:
    """Process entry: open the sessions, report, measure in the window the main sends."""
    _quiet_exit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_crowd(plan, control, results))


async def _crowd(plan: CrowdPlan, control: Queue[Any], results: Queue[Any]) -> None:
    asyncio.get_running_loop().set_exception_handler(_ignore_lost_connections)
    window = Window()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(plan.concurrency)
    watchers: list[Watcher] = []
    failures: Counter[str] = Counter()
    ramp_end = time.monotonic() + plan.ramp_s

    async def session(index: int) -> None:
        async with contextlib.AsyncExitStack() as stack:
            async with gate:
                if time.monotonic() > ramp_end:
                    failures["ramp-timeout"] += 1
                    return
                try:
                    async with asyncio.timeout(15):
                        conn = await stack.enter_async_context(
                            connect(
                                "127.0.0.1",
                                plan.port,
                                configuration=_config(),
                                create_protocol=Watcher,
                            )
                        )
                        watcher = cast(Watcher, conn)
                        watcher.window = window
                        watcher.decode = index < plan.decoding
                        status = await watcher.open(f"/live/{plan.race_id}")
                except (TimeoutError, OSError, ConnectionError) as exc:
                    failures[type(exc).__name__] += 1
                    return
                if status != 200:
                    failures[f"status-{status}"] += 1
                    return
                watchers.append(watcher)
            await stop.wait()

    started = time.monotonic()
    tasks = [asyncio.create_task(session(i)) for i in range(plan.sessions)]
    while len(watchers) + sum(failures.values()) < plan.sessions:
        await asyncio.sleep(0.05)
    results.put(("ready", plan.worker, len(watchers), dict(failures), time.monotonic() - started))
    lags: list[float] = []
    while True:  # the window, from the main process
        with contextlib.suppress(queue.Empty):
            command = control.get_nowait()
            if command[0] == "stop":
                break
            if command[0] == "window":
                window.start, window.end = command[1], command[2]
        if window.start <= window.end < time.monotonic() - GRACE_S:
            break
        before = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        if window.start <= before <= window.end:  # how late this loop wakes up
            lags.append((time.monotonic() - before - LAG_PROBE_S) * 1000)
    report = [_report(w) for w in watchers]
    results.put(("done", plan.worker, report, dict(failures), lags))
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()


def _report(watcher: Watcher) -> dict[str, Any]:
    s = watcher.stats
    out: dict[str, Any] = {
        "datagrams": s.datagrams,
        "ticks": sorted(s.ticks),
        "closed": s.closed,
        "joined": s.joined,
    }
    if watcher.decode:
        out.update(seen=s.seen, riders=s.riders, undecodable=s.undecodable)
    return out
