"""The uploader: the buffered fixes to a relay (or the cloud) over HTTP/3, exactly once.

The protocol's :class:`~sync_protocol.sender.Sender` decides what to send; this module
does the I/O around it. For each connection (see ``sync_protocol/upload.py``):

1. ``POST /v1/hello`` with the device certificate and a fresh 32-byte session key; the
   reply's ack is folded in, and ``live_mac`` says whether live fixes may go MAC'd.
2. On every new fix and every :attr:`Uploader.tick_s`: ``Sender.next_sends(now)``, load
   those fixes from the store, seal them (signed, or MAC'd with the session key) and
   ``POST /v1/batches`` several per request. Each result's ack and ``cloud_acked_seq``
   are folded in and the state committed before anything else is sent.
3. A batch refused with ``no-certificate`` or ``no-session`` (the hop restarted): hello
   again. Junk, a 5xx, a timeout or an unreachable hop: the connection is dropped, the
   next hop tried, and the failed one retried after a backoff with jitter.
4. With a battery (:mod:`tracker_app.battery`), ``POST /v1/status`` goes out next to an
   upload when a :class:`~sync_protocol.device_status.StatusReporter` says one is due (the
   level moved 1 %, charging changed, a minute passed, a new connection): in the same
   flight as the batches, so it never wakes the radio by itself. MAC'd with the session
   key on a relay, signed by the device key on the cloud.

Hops come in preference order from a :class:`HopList`: relays given with ``--relay``,
relays found with zeroconf, then the cloud. While on the cloud, a relay that appears is
switched to. Switching never loses or duplicates anything: acks from any hop count, and a
new hop's first batch carries the chain hash it may lack. A coverage dropout
(:meth:`Uploader.set_coverage`) closes the link until coverage returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.batch import encode_batch, seal
from sync_protocol.certificate import DeviceCertificate
from sync_protocol.device_status import DeviceStatus, StatusReporter
from sync_protocol.errors import DecodeError, ProtocolError
from sync_protocol.framing import MAX_FRAMES, encode_frames
from sync_protocol.sender import Send, Sender
from sync_protocol.session import SessionHello
from sync_protocol.upload import (
    BATCHES_PATH,
    CONTENT_TYPE,
    HELLO_PATH,
    STATUS_PATH,
    HelloReply,
    UploadResult,
    decode_results,
)

from .battery import Battery
from .errors import HopError, HopRefused, TrackerError
from .h3client import H3Client, Radio, Tickets, connect
from .hops import Backoff, Hop, HopList, Link, wall_ms
from .store import FixStore

log = logging.getLogger("gruppetto.tracker.sync")

REQUEST_BYTES = 1024 * 1024
"""Largest ``/v1/batches`` body this tracker sends (hops take up to 4 MiB)."""
REQUEST_BATCHES = min(256, MAX_FRAMES)
"""Most batches in one request."""
HELLO_AGAIN = frozenset({"no-certificate", "no-session"})
"""Refusals that mean the hop forgot the session: say hello again."""
REFUSING = frozenset(
    {
        "expired",
        "wrong-race",
        "unknown-issuer",
        "forged-certificate",
        "not-yet-valid",
        "unsigned",
        "bad-signature",
        "stale-hello",
        "outside-validity",
        "certificate",
    }
)
"""Refusals of the device itself: retrying the same hop soon cannot help."""
MAX_HELLOS = 3
"""Hellos again in a row (without an upload going through) before the hop counts as broken."""
REFUSED_HOP_S = 600.0
"""How long a hop that refused this device (wrong race, expired) is left alone."""


class _HelloNeeded(Exception):
    """The hop forgot this device's session; say hello again on this connection."""


class Uploader:
    """Keeps the buffered fixes flowing to the best reachable hop; see the module doc."""

    def __init__(
        self,
        *,
        sender: Sender,
        store: FixStore,
        key: Ed25519PrivateKey,
        certificate: DeviceCertificate,
        hops: HopList,
        radio: Radio | None = None,
        tickets: Tickets | None = None,
        now_ms: Callable[[], int] = wall_ms,
        tick_s: float = 1.0,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        backoff: Backoff | None = None,
        rediscover_s: float = 10.0,
        rng: random.Random | None = None,
        battery: Battery | None = None,
        reporter: StatusReporter | None = None,
    ) -> None:
        self.sender = sender
        self.store = store
        self.key = key
        self.certificate = certificate
        self.hops = hops
        self.radio = radio or Radio()
        self.tickets = tickets or Tickets()
        self.now_ms = now_ms
        self.tick_s = tick_s
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.rediscover_s = rediscover_s
        self.rng = rng or random.Random()
        self.battery = battery
        """Where the battery level comes from (None: no device statuses are sent)."""
        self.reporter = reporter or StatusReporter()
        """When a device status is due."""
        self.statuses_sent = 0
        """Device statuses a hop took."""
        self.status_refusals = 0
        """Device statuses a hop refused (other than for a forgotten session)."""
        self.link = Link.OFFLINE
        """Where uploads go now."""
        self.hop: Hop | None = None
        """The hop connected to (None when offline)."""
        self.last_ack_ms: int | None = None
        """When the last ack arrived (wall ms)."""
        self.last_error = ""
        """The latest failure or refusal, for the status line ('' once things work)."""
        self.refusals = 0
        """Batches a hop refused (other than for a forgotten session)."""
        self.connections = 0
        """Connections opened (hellos sent)."""
        self.resumed = 0
        """Connections that resumed a TLS session (no certificate exchange)."""
        self.early_data = 0
        """Connections whose hello went as 0-RTT early data and was accepted."""
        self.failures = 0
        """Connections or requests that failed (junk, 5xx, timeouts, unreachable hops)."""
        self.on_sends: Callable[[Hop, list[Send]], None] | None = None
        """Called with each plan before it is sent (logging, tests)."""
        self.coverage = True
        """Whether the radio has coverage (from the position source's flag)."""
        self._session_key: bytes | None = None
        self._statuses = False  # whether this connection's hop takes device statuses
        self._connection = 0
        self._flush = False
        self._failures: dict[tuple[str, int, bytes], int] = {}
        self._retry_at: dict[tuple[str, int, bytes], float] = {}
        self._poke = asyncio.Event()
        self._changed = asyncio.Event()

    # -- inputs -------------------------------------------------------------------------

    def wake(self) -> None:
        """A fix was recorded: plan and send now."""
        self._poke.set()

    def set_coverage(self, covered: bool) -> None:
        """Coverage came or went (a dropout pauses the link)."""
        if covered != self.coverage:
            self.coverage = covered
            self._poke.set()

    def flush(self) -> None:
        """Seal everything now: provisional (MAC'd) fixes go again signed, at once.

        For the end of a ride (the source ended), so the last fixes do not wait for the
        next signed one to make them permanent.
        """
        self._flush = True
        self._poke.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (bounded) until ``predicate()`` holds after some ack or link change."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return predicate()
        return True

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Upload until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._until(lambda: self.coverage and self.sender.waiting > 0)
                candidates = self.hops.hops()
                ready = [
                    h for h in candidates if self._retry_at.get(h.endpoint.key, 0) <= loop.time()
                ]
                self._poke.clear()
                if not candidates:
                    self.last_error = "no relay found and no cloud to upload to"
                    await self._sleep(self.backoff.max_s)
                    continue
                if not ready:
                    wake = min(self._retry_at.get(h.endpoint.key, 0) for h in candidates)
                    await self._sleep(wake - loop.time())
                    continue
                for hop in ready:
                    if await self._attempt(hop):
                        break
        finally:
            self._set_link(None)

    async def _attempt(self, hop: Hop) -> bool:
        """One connection to ``hop``: True if it worked (then the list is looked at anew)."""
        key = hop.endpoint.key
        try:
            await self._session(hop)
        except HopRefused as exc:
            self.last_error = exc.message
            log.warning("%s refused this device: %s", hop.name, exc.message)
            self._retry_at[key] = asyncio.get_running_loop().time() + REFUSED_HOP_S
            return False
        except TrackerError as exc:
            if not isinstance(exc, HopError):
                raise  # the buffer or the account: nothing a hop can fix
            self._failed(hop, exc.message, exc.retry_after_s)
            return False
        except (OSError, ValueError, RuntimeError, ProtocolError) as exc:
            # aioquic, the socket or a codec tripped over what the hop did: not fatal to us.
            log.warning("upload to %s broke: %r", hop.name, exc, exc_info=True)
            self._failed(hop, f"connection broke ({exc!r})")
            return False
        finally:
            self._set_link(None)
        return True

    def _failed(self, hop: Hop, reason: str, retry_after_s: float | None = None) -> None:
        """Count a failure and keep ``hop`` aside for a backoff with jitter (or as long as
        it asked, up to the longest backoff)."""
        self.failures += 1
        key = hop.endpoint.key
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures, self.rng)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.backoff.max_s))
        self._retry_at[key] = asyncio.get_running_loop().time() + delay
        self.last_error = f"{hop.name}: {reason}"
        log.info("upload to %s failed (%s); retry in %.1f s", hop.name, reason, delay)

    async def _session(self, hop: Hop) -> None:
        async with connect(
            hop.endpoint, radio=self.radio, tickets=self.tickets, timeout_s=self.connect_timeout_s
        ) as conn:
            await self._hello(conn, hop)
            self.connections += 1
            self.resumed += conn.resumed
            self.early_data += conn.early_data_accepted
            self._failures.pop(hop.endpoint.key, None)
            self._set_link(hop)
            started = asyncio.get_running_loop().time()
            hellos = 0
            while self.coverage:
                self._poke.clear()
                if self._flush:  # forget the session: unsealed fixes are re-planned, signed
                    self._flush, self._session_key = False, None
                    self._connection = self.sender.connected(session=False)
                sends = self.sender.next_sends(self.now_ms())
                if sends:
                    try:
                        await self._upload(conn, hop, sends)
                        hellos = 0
                    except _HelloNeeded:
                        hellos += 1
                        if hellos > MAX_HELLOS:
                            raise HopError(f"{hop.name} keeps forgetting the session") from None
                        await self._hello(conn, hop)
                        continue
                elif conn.failure:
                    if self.sender.waiting:
                        raise HopError(conn.failure)
                    return  # idle connection closed (idle timeout): reconnect when needed
                if self._should_switch(hop, started):
                    return
                await self._sleep(self.tick_s)

    def _should_switch(self, hop: Hop, started: float) -> bool:
        """On the cloud and a relay is listed: move to it, at once if it never failed
        (newly found), else once ``rediscover_s`` passed and its backoff ran out."""
        if hop.kind is not Link.CLOUD:
            return False
        now = asyncio.get_running_loop().time()
        settled = now - started >= self.rediscover_s
        for relay in self.hops.hops():
            key = relay.endpoint.key
            if relay.kind is Link.RELAY and (
                key not in self._failures or (settled and self._retry_at.get(key, 0) <= now)
            ):
                return True
        return False

    async def _hello(self, conn: H3Client, hop: Hop) -> None:
        session_key = os.urandom(32)
        hello = SessionHello.create(self.key, self.certificate, session_key, self.now_ms())
        response = await conn.request(
            "POST",
            HELLO_PATH,
            hello.encode(),
            content_type=CONTENT_TYPE,
            timeout_s=self.request_timeout_s,
        )
        if response.status != 200:
            error = _refusal(hop, HELLO_PATH, response.status, response.body, response.headers)
            if isinstance(error, HopRefused) and error.reason in HELLO_AGAIN:
                raise HopError(error.message)  # nonsense for a hello: a broken hop
            raise error
        try:
            reply = HelloReply.decode(response.body)
        except DecodeError as exc:
            raise HopError(f"{hop.name} answered the hello with junk ({exc.message})") from None
        self._session_key = session_key if reply.live_mac else None
        self._connection = self.sender.connected(session=reply.live_mac)
        self._statuses = True
        self.reporter.connected()
        self._fold([UploadResult(reply.ack, reply.cloud_acked_seq)])

    async def _upload(self, conn: H3Client, hop: Hop, sends: list[Send]) -> None:
        if self.on_sends is not None:
            self.on_sends(hop, sends)
        batches = [self._seal(send) for send in sends]
        status = self._due_status()
        # The status leaves with the first request (same flight, no wake-up of its own).
        beside = None if status is None else asyncio.create_task(self._status(conn, hop, status))
        try:
            await self._batches(conn, hop, batches)
        except BaseException:
            if beside is not None:
                beside.cancel()
            raise
        if beside is not None:
            await beside

    async def _batches(self, conn: H3Client, hop: Hop, batches: list[bytes]) -> None:
        for body, count in _requests(batches):
            response = await conn.request(
                "POST",
                BATCHES_PATH,
                body,
                content_type=CONTENT_TYPE,
                timeout_s=self.request_timeout_s,
            )
            if response.status != 200:
                error = _refusal(
                    hop, BATCHES_PATH, response.status, response.body, response.headers
                )
                if isinstance(error, HopRefused) and error.reason in HELLO_AGAIN:
                    raise _HelloNeeded
                raise error
            try:
                results = decode_results(response.body)
            except DecodeError as exc:
                raise HopError(f"{hop.name} answered an upload with junk ({exc.message})") from None
            if len(results) != count:
                raise HopError(f"{hop.name} answered {len(results)} results for {count} batches")
            again = self._fold(results)
            if again:
                raise _HelloNeeded

    def _due_status(self) -> DeviceStatus | None:
        """Read the battery; the device status to send now, if one is due."""
        if self.battery is None or not self._statuses:
            return None
        level = self.battery.read()
        if level is None:
            return None
        now = self.now_ms()
        if not self.reporter.due(level.percent, level.charging, now):
            return None
        device = self.certificate.device_id
        if self._session_key is not None:
            return DeviceStatus.create(
                device, now, level.percent, level.charging, session_key=self._session_key
            )
        return DeviceStatus.create(device, now, level.percent, level.charging, key=self.key)

    async def _status(self, conn: H3Client, hop: Hop, status: DeviceStatus) -> None:
        """Send a device status; the answer goes to the reporter, never fails the upload."""
        try:
            response = await conn.request(
                "POST",
                STATUS_PATH,
                status.encode(),
                content_type=CONTENT_TYPE,
                timeout_s=self.request_timeout_s,
            )
        except HopError:
            return  # the connection is failing: the batches say so; the status stays due
        if response.status in (200, 204):
            self.reporter.sent(status)
            self.statuses_sent += 1
            return
        if response.status in (404, 405):
            self._statuses = False  # an older hop: no statuses on this connection
            log.info("%s takes no device status", hop.name)
            return
        error = _refusal(hop, STATUS_PATH, response.status, response.body, response.headers)
        if isinstance(error, HopRefused) and error.reason in HELLO_AGAIN:
            return  # the hop forgot the session; the next batch says hello again
        self.reporter.refused(self.now_ms())
        self.status_refusals += 1
        log.warning("device status refused: %s", error.message)

    def _seal(self, send: Send) -> bytes:
        fixes = self.store.fixes(send.first_seq, send.last_seq)
        prev = self.store.hash_before(send.first_seq)
        device = self.certificate.device_id
        if send.signed or self._session_key is None:
            batch = seal(
                device, fixes, prev, key=self.key, include_prev_hash=send.include_prev_hash
            )
        else:
            batch = seal(
                device,
                fixes,
                prev,
                session_key=self._session_key,
                include_prev_hash=send.include_prev_hash,
            )
        return encode_batch(batch)

    def _fold(self, results: Sequence[UploadResult] | None) -> bool:
        """Fold acks in and commit the state; True when the hop wants a new hello."""
        now = self.now_ms()
        hello_again = False
        for result in results or ():
            if result.ack is not None:
                self.sender.on_ack(result.ack, now, self._connection)
                self.last_ack_ms = now
            self.sender.on_cloud_ack(result.cloud_acked_seq)
            if result.reason in HELLO_AGAIN:
                hello_again = True
            elif result.refused:
                self.refusals += 1
                self.last_error = f"batch refused: {result.reason}: {result.message}"
                log.warning("batch refused (%s): %s", result.reason, result.message)
        self.store.save_state(self.sender.state)
        if results and not any(r.refused for r in results):
            self.last_error = ""
        self._changed.set()
        return hello_again

    # -- waiting ------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if poked (a new fix, coverage change) since the
        caller last cleared the poke."""
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._poke.wait()
        except TimeoutError:
            pass

    async def _until(self, condition: Callable[[], bool]) -> None:
        self._poke.clear()
        while not condition():
            await self._poke.wait()
            self._poke.clear()

    def _set_link(self, hop: Hop | None) -> None:
        self.hop = hop
        self.link = Link.OFFLINE if hop is None else hop.kind
        self._changed.set()


def _requests(batches: list[bytes]) -> list[tuple[bytes, int]]:
    """Group encoded batches into request bodies within the size and count limits."""
    bodies: list[tuple[bytes, int]] = []
    chunk: list[bytes] = []
    size = 0
    for batch in batches:
        if chunk and (len(chunk) == REQUEST_BATCHES or size + len(batch) > REQUEST_BYTES):
            bodies.append((encode_frames(chunk), len(chunk)))
            chunk, size = [], 0
        chunk.append(batch)
        size += len(batch) + 4
    if chunk:
        bodies.append((encode_frames(chunk), len(chunk)))
    return bodies


def _refusal(
    hop: Hop, path: str, status: int, body: bytes, headers: dict[str, str] | None = None
) -> HopError:
    """The error for a non-200 answer: HopRefused when retrying cannot help."""
    reason, message = "", ""
    try:
        value = json.loads(body)
        if isinstance(value, dict):
            error = value.get("error")
            if isinstance(error, dict):  # the cloud's API error shape
                reason, message = str(error.get("code", "")), str(error.get("message", ""))
            else:
                reason, message = str(error or ""), str(value.get("message", ""))
    except ValueError:
        pass
    text = f"{hop.name} answered {path} with {status}" + (f" {reason}: {message}" if reason else "")
    if 400 <= status < 500 and (reason in REFUSING or reason in HELLO_AGAIN):
        return HopRefused(text, reason=reason)
    retry = (headers or {}).get("retry-after", "")
    return HopError(text, retry_after_s=float(retry) if retry.isdigit() else None)
