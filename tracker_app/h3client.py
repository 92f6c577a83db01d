"""A small HTTP/3 client on aioquic for uploads: pinning, resumption, what goes on the air.

* **Pinning.** A relay has a self-signed certificate and advertises the SHA-256 of its DER;
  with a pin, the certificate must hash to it (no CA involved) and nothing is sent before
  the handshake proves it. Without a pin, the usual CA check applies (with the cloud's
  own CA file when it has a private one).
* **Resumption.** TLS session tickets are kept per endpoint (:class:`Tickets`); the next
  connection resumes the session, and sends its first request as 0-RTT early data when
  the ticket allows it: a reconnect after a coverage gap costs no extra round trip. A
  ticket comes only from a connection that passed the pin check, and early data is
  encrypted under that session's keys, so only the pinned server can read it.
* **The radio.** :class:`Radio` counts datagrams and UDP payload bytes both ways, and the
  times a send woke the radio (a send after :attr:`Radio.tail_s` of silence), the figure
  that matters for a phone's battery.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamReset
from aioquic.tls import SessionTicket
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import HopError

PIN_MISMATCH = 0x0128  # a QUIC CRYPTO_ERROR code (0x0100 + TLS alert 40, handshake_failure)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, and how to trust it."""

    host: str
    """Host name or IP address."""
    port: int
    """UDP port of HTTP/3."""
    pin_sha256: bytes | None = None
    """SHA-256 of the server certificate's DER; when set, no CA check is made."""
    cadata: bytes | None = None
    """PEM certificates to trust (a private cloud's CA); None: the system's CAs."""

    @property
    def key(self) -> tuple[str, int, bytes]:
        """Identifies the endpoint for session tickets."""
        return (self.host, self.port, self.pin_sha256 or b"")


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP/3 answer."""

    status: int
    """Status code."""
    headers: dict[str, str]
    """Header fields (lower-case names)."""
    body: bytes
    """The body."""


class Radio:
    """Counts datagrams, UDP payload bytes and radio wake-ups of the uploader."""

    def __init__(self, tail_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.tail_s = tail_s
        """A send after this much silence counts as waking the radio."""
        self.datagrams_sent = 0
        """UDP datagrams sent."""
        self.datagrams_received = 0
        """UDP datagrams received."""
        self.bytes_sent = 0
        """UDP payload bytes sent (QUIC packets: headers, handshake, acks, requests)."""
        self.bytes_received = 0
        """UDP payload bytes received."""
        self.wakeups = 0
        """Sends that found the radio idle (after ``tail_s`` of silence)."""
        self._clock = clock
        self._last: float | None = None

    def sent(self, size: int) -> None:
        """A datagram of ``size`` bytes went out."""
        now = self._clock()
        if self._last is None or now - self._last >= self.tail_s:
            self.wakeups += 1
        self._last = now
        self.datagrams_sent += 1
        self.bytes_sent += size

    def received(self, size: int) -> None:
        """A datagram of ``size`` bytes came in."""
        self._last = self._clock()
        self.datagrams_received += 1
        self.bytes_received += size


class Tickets:
    """TLS session tickets by endpoint (in memory; one per endpoint, the newest)."""

    def __init__(self) -> None:
        self._tickets: dict[tuple[str, int, bytes], SessionTicket] = {}

    def get(self, endpoint: Endpoint) -> SessionTicket | None:
        """A still-valid ticket for ``endpoint``, if any."""
        ticket = self._tickets.get(endpoint.key)
        if ticket is not None and not ticket.is_valid:
            del self._tickets[endpoint.key]
            return None
        return ticket

    def put(self, endpoint: Endpoint, ticket: SessionTicket) -> None:
        """Keep ``ticket`` for the next connection to ``endpoint``."""
        self._tickets[endpoint.key] = ticket

    def forget(self, endpoint: Endpoint) -> None:
        """Drop the endpoint's ticket (its server restarted, or failed)."""
        self._tickets.pop(endpoint.key, None)


class _CountingTransport:
    """The datagram transport, with every send counted by the radio."""

    def __init__(self, transport: asyncio.DatagramTransport, radio: Radio) -> None:
        self._transport = transport
        self._radio = radio

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._radio.sent(len(data))
        self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class H3Client(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3 to one endpoint."""

    def __init__(
        self, quic: QuicConnection, *, endpoint: Endpoint, radio: Radio, **kwargs: Any
    ) -> None:
        super().__init__(quic, **kwargs)
        self.endpoint = endpoint
        self.radio = radio
        self.http = H3Connection(quic)
        self.handshake_done = False
        """Whether the QUIC handshake completed."""
        self.resumed = False
        """Whether the TLS session was resumed from a ticket."""
        self.early_data_accepted = False
        """Whether the server took the 0-RTT data."""
        self.failure: str = ""
        """Why the connection ended or was refused (empty while usable)."""
        self.ready = asyncio.Event()
        """Set once the handshake completed (and the pin, if any, matched)."""
        self.on_trusted: Callable[[], None] | None = None
        """Called when ``ready`` is set (session tickets are kept only from then on)."""
        self.dead = asyncio.Event()
        """Set once the connection failed (closed, refused, pin mismatch)."""
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._events: dict[int, list[H3Event]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        counting = _CountingTransport(cast(asyncio.DatagramTransport, transport), self.radio)
        super().connection_made(cast(asyncio.BaseTransport, counting))

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.radio.received(len(data))
        super().datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        """The network said the peer is unreachable (ICMP): fail now rather than time out."""
        self.failure = f"{self._name()} is unreachable ({exc})"
        self._fail_all()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.handshake_done = True
            self.resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
            self._check_pin()
            if not self.failure:
                self.ready.set()
                if self.on_trusted is not None:
                    self.on_trusted()
        elif isinstance(event, ConnectionTerminated):
            self.failure = self.failure or (
                f"{self._name()} closed the connection "
                f"({event.error_code:#x} {event.reason_phrase})".strip()
            )
            self._fail_all()
            return
        elif isinstance(event, StreamReset):
            waiter = self._waiting.pop(event.stream_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(HopError(f"{self._name()} reset the request"))
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, HeadersReceived | DataReceived):
                stream = h3_event.stream_id
                self._events.setdefault(stream, []).append(h3_event)
                if h3_event.stream_ended:
                    waiter = self._waiting.pop(stream, None)
                    events = self._events.pop(stream)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(_response(events))

    def _check_pin(self) -> None:
        pin = self.endpoint.pin_sha256
        if pin is None or self.resumed:
            return  # CA-checked by TLS, or a session first opened with the pin checked
        certificate = self._quic.tls._peer_certificate
        digest = b"" if certificate is None else certificate.public_bytes(Encoding.DER)
        if hashlib.sha256(digest).digest() != pin:
            self.failure = (
                f"{self._name()} presented a certificate other than the advertised one "
                "(pin mismatch): not sending to it"
            )
            self.close(error_code=PIN_MISMATCH, reason_phrase="certificate pin mismatch")
            self._fail_all()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = "",
        timeout_s: float = 10.0,
    ) -> Response:
        """Send one request and wait for the whole answer; HopError on any failure."""
        if self.failure:
            raise HopError(self.failure)
        stream = self._quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", f"{self.endpoint.host}:{self.endpoint.port}".encode()),
            (b":path", path.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if content_type:
            fields.append((b"content-type", content_type.encode()))
        done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[stream] = done
        self.http.send_headers(stream, fields, end_stream=not body)
        if body:
            self.http.send_data(stream, body, end_stream=True)
        self.transmit()
        try:
            async with asyncio.timeout(timeout_s):
                return await done
        except TimeoutError:
            raise HopError(f"{self._name()} did not answer {path} within {timeout_s:g} s") from None
        finally:
            self._waiting.pop(stream, None)
            self._events.pop(stream, None)

    def _fail_all(self) -> None:
        self.dead.set()
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(HopError(self.failure))
        self._waiting.clear()

    def _name(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"


def _response(events: list[H3Event]) -> Response:
    status, headers, body = 0, {}, bytearray()
    for event in events:
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    status = int(value)
                else:
                    headers[name.decode("latin-1")] = value.decode("latin-1")
        elif isinstance(event, DataReceived):
            body += event.data
    return Response(status, headers, bytes(body))


async def _handshake(protocol: H3Client, timeout_s: float) -> None:
    """Wait for the handshake, a failure, or the timeout, whichever comes first."""
    connected = asyncio.ensure_future(protocol.ready.wait())
    dead = asyncio.ensure_future(protocol.dead.wait())
    await asyncio.wait({connected, dead}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for task in (connected, dead):
        task.cancel()
    await asyncio.gather(connected, dead, return_exceptions=True)


@asynccontextmanager
async def connect(
    endpoint: Endpoint,
    *,
    radio: Radio,
    tickets: Tickets,
    timeout_s: float = 5.0,
    idle_timeout_s: float = 30.0,
) -> AsyncIterator[H3Client]:
    """A connection to ``endpoint``; HopError when it cannot be opened or trusted.

    With a resumable ticket that allows early data the connection is yielded before the
    handshake completes, so the first request travels as 0-RTT data.
    """
    loop = asyncio.get_running_loop()
    name = f"{endpoint.host}:{endpoint.port}"
    try:
        infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise HopError(f"cannot resolve {endpoint.host}: {exc}") from None
    family, _, _, _, address = infos[0]
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=endpoint.host,
        idle_timeout=idle_timeout_s,
    )
    if endpoint.pin_sha256 is not None:
        config.verify_mode = ssl.CERT_NONE  # the pin is checked instead (see H3Client)
    elif endpoint.cadata is not None:
        config.load_verify_locations(cadata=endpoint.cadata)
    ticket = tickets.get(endpoint)
    config.session_ticket = ticket
    # A ticket may arrive before the pin is checked: keep it only once the server is trusted.
    pending: list[SessionTicket] = []
    trusted = asyncio.Event()

    def on_ticket(new: SessionTicket) -> None:
        if trusted.is_set():
            tickets.put(endpoint, new)
        else:
            pending.append(new)

    def on_trusted() -> None:
        trusted.set()
        for new in pending:
            tickets.put(endpoint, new)
        pending.clear()

    quic = QuicConnection(configuration=config, session_ticket_handler=on_ticket)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))  # noqa: S104 (any port)
        sock.connect(address)  # connected: the kernel reports "port unreachable" to us
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: H3Client(quic, endpoint=endpoint, radio=radio), sock=sock
        )
    except OSError as exc:
        sock.close()
        raise HopError(f"cannot open a UDP socket to {name}: {exc}") from None
    assert isinstance(protocol, H3Client)  # made by the factory above
    protocol.on_trusted = on_trusted
    try:
        protocol.connect(address)
        early = ticket is not None and ticket.max_early_data_size is not None
        if not early:
            await _handshake(protocol, timeout_s)
            if protocol.failure or not protocol.handshake_done:
                tickets.forget(endpoint)
                reason = protocol.failure or f"no QUIC handshake within {timeout_s:g} s"
                raise HopError(f"cannot connect to {name}: {reason}")
        yield protocol
    finally:
        protocol.close()
        transport.close()
