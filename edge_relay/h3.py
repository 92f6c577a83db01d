"""The relay's UDP side: aioquic HTTP/3 for tracker uploads, WebTransport for spectators.

Hypercorn has no WebTransport, so this is aioquic itself: one
:class:`RelayQuicProtocol` per QUIC connection turns H3 events into calls on a
:class:`Handler` (plain requests) and :class:`WebTransportSession` objects (a spectator
watching a race). Everything about *what* to answer lives in the handler; this module only
moves bytes.

Known aioquic pitfall, handled in :meth:`WebTransportSession.send_on_stream`: a
bidirectional WebTransport stream opened by the server would have the peer's reply parsed
as HTTP/3 frames (and the connection closed with 0x106, H3_FRAME_UNEXPECTED) unless the
stream is registered as a WebTransport stream of its session first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pylsqpack
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, Setting
from aioquic.h3.events import (
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicFrameType, QuicPacketType
from aioquic.quic.packet_builder import QuicPacketBuilder, QuicPacketBuilderStop
from aioquic.tls import Epoch, SessionTicket

log = logging.getLogger("gruppetto.relay.h3")

IDLE_TIMEOUT_S = 60.0
"""A QUIC connection with no traffic for this long is closed."""
MAX_PENDING_DATAGRAMS = 2
"""Datagrams queued per connection beyond which the oldest are dropped (latest wins)."""
H3_REQUEST_CANCELLED = 0x10C
LONE_PACKET_OVERHEAD = 64
"""Room beyond a datagram's payload that :meth:`RelayQuicProtocol.send_lone_datagram`
wants in the congestion window: short header, frame type and length, AEAD tag."""


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer."""

    status: int
    """Status code."""
    body: bytes = b""
    """Body."""
    content_type: str = "application/json"
    """Content type of the body."""


class Handler(Protocol):
    """What the relay does with requests and sessions."""

    max_body: int
    """Largest request body accepted (413 beyond)."""
    request_timeout_s: float
    """A request whose body has not fully arrived by then is reset (half-open uploads)."""

    async def request(self, method: str, path: str, body: bytes) -> Response:
        """Answer one HTTP/3 request."""

    def session_opened(self, path: str, session: WebTransportSession) -> bool:
        """A WebTransport CONNECT on ``path``: False refuses it (404)."""

    def session_closed(self, session: WebTransportSession) -> None:
        """A session ended (closed by the peer, or its connection went away)."""

    def session_message(self, session: WebTransportSession, data: bytes) -> None:
        """The browser wrote ``data`` on one of the session's streams."""


class WebTransportSession:
    """One spectator's WebTransport session."""

    def __init__(self, protocol: RelayQuicProtocol, session_id: int, path: str) -> None:
        self.protocol = protocol
        self.session_id = session_id
        """The CONNECT stream's id."""
        self.path = path
        """The path of the CONNECT request (``/live/RACE``)."""
        self.closed = False
        """True once the session or its connection ended."""
        self.state: Any = None
        """The fan-out's per-session data."""
        self._prefix = encode_uint_var(session_id // 4)

    def send_datagram(self, data: bytes) -> None:
        """Send one datagram; if the connection is behind, older datagrams are dropped."""
        if self.closed or self.protocol.h3 is None:
            return
        payload = self._prefix + data  # the session's quarter stream id, as aioquic's H3 does
        if self.protocol.send_lone_datagram(payload):
            return
        pending = self.protocol.pending_datagrams()
        while pending is not None and len(pending) >= MAX_PENDING_DATAGRAMS:
            pending.popleft()
            self.protocol.dropped_datagrams += 1
        self.protocol._quic.send_datagram_frame(payload)
        self.protocol.transmit()

    def send_on_stream(self, data: bytes) -> None:
        """Send ``data`` on a new server-opened bidirectional stream, then end our side."""
        h3 = self.protocol.h3
        if self.closed or h3 is None:
            return
        stream_id = h3.create_webtransport_stream(self.session_id, is_unidirectional=False)
        # Register the stream as WebTransport so the browser's reply on it is delivered as
        # WebTransportStreamDataReceived rather than parsed as HTTP/3 frames (aioquic
        # pitfall: it would close the connection with H3_FRAME_UNEXPECTED).
        with h3._get_or_create_stream(stream_id) as stream:
            stream.frame_type = FrameType.WEBTRANSPORT_STREAM
            stream.session_id = self.session_id
        self.protocol._quic.send_stream_data(stream_id, data, end_stream=True)
        self.protocol.transmit()

    def close(self) -> None:
        """End the session (its CONNECT stream)."""
        if not self.closed and self.protocol.h3 is not None:
            self.protocol._quic.send_stream_data(self.session_id, b"", end_stream=True)
            self.protocol.transmit()
        self.closed = True


class _StaticEncoder:
    """pylsqpack's encoder, held to the static table whatever the peer allows."""

    def __init__(self, encoder: pylsqpack.Encoder) -> None:
        self._encoder = encoder

    def apply_settings(self, max_table_capacity: int, blocked_streams: int) -> bytes:
        return self._encoder.apply_settings(max_table_capacity=0, blocked_streams=0)

    def encode(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        return self._encoder.encode(stream_id, headers)

    def feed_decoder(self, data: bytes) -> None:
        self._encoder.feed_decoder(data)


class StaticTableH3(H3Connection):
    """HTTP/3 with QPACK's static table only, both ways.

    With a dynamic table each request's headers make the decoder acknowledge them on its
    stream: two more packets per upload (that acknowledgement and the ACK it needs), each
    ~0.2 ms of the relay's Python. The relay's headers are a few short fields; the static
    table and literals carry them in a handful of bytes more.
    """

    def __init__(self, quic: QuicConnection, enable_webtransport: bool = False) -> None:
        super().__init__(quic, enable_webtransport=enable_webtransport)
        self._max_table_capacity = 0
        self._blocked_streams = 0
        self._decoder = pylsqpack.Decoder(0, 0)
        self._encoder = _StaticEncoder(self._encoder)  # type: ignore[assignment]

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[Setting.QPACK_MAX_TABLE_CAPACITY] = 0
        settings[Setting.QPACK_BLOCKED_STREAMS] = 0
        return settings


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    body: bytearray = field(default_factory=bytearray)
    too_large: bool = False
    timer: asyncio.TimerHandle | None = None


class RelayQuicProtocol(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 requests and WebTransport sessions."""

    def __init__(self, *args: Any, handler: Handler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler = handler
        self.h3: H3Connection | None = None
        self.sessions: dict[int, WebTransportSession] = {}
        self.dropped_datagrams = 0
        self._requests: dict[int, _Request] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.quiet_acks = 0
        """Packets taken in without a pass over the connection (see :meth:`_quiet`)."""
        self.lone_datagrams = 0
        """Datagrams sent by :meth:`send_lone_datagram`."""
        self._losses = 0
        self._flushed = False
        quic = self._quic
        if not quic._logger.isEnabledFor(logging.DEBUG):
            # aioquic logs a few debug lines per packet; each call walks the logging
            # machinery before it is dropped (3 % of a fan-out worker's CPU).
            quic._logger.debug = _discard  # type: ignore[method-assign]
        counted = quic._loss._on_packets_lost

        def on_packets_lost(*, packets: Any, **kwargs: Any) -> None:
            packets = list(packets)
            if packets:
                self._losses += 1
            counted(packets=packets, **kwargs)

        quic._loss._on_packets_lost = on_packets_lost  # type: ignore[method-assign]

    def pending_datagrams(self) -> Any:
        """aioquic's queue of datagram frames not yet sent (a deque), if it has one."""
        return getattr(self._quic, "_datagrams_pending", None)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        losses = self._losses
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        if losses == self._losses and addr is not None and self._quiet(addr):
            self.quiet_acks += 1
            self._arm_timer()
        else:
            self.transmit()

    def transmit(self) -> None:
        super().transmit()
        self._flushed = bool(self.sessions) and self._idle()

    def _quiet(self, addr: Any = None) -> bool:
        """Whether a spectator's connection has nothing waiting to be sent, as far as the
        last :meth:`transmit` left it (``_flushed``) and what may have changed since: an
        ACK owed, a datagram queued, the connection closing, and (given ``addr``, where a
        packet just came from) a new path to validate.

        Every tick each spectator's browser acknowledges its datagram: a packet that asks
        for nothing, yet aioquic would build (and drop) an empty packet for it, with a pass
        over every stream of the connection; sending the next datagram is two such passes.
        On a quiet connection :meth:`datagram_received` only re-arms the timer and
        :meth:`send_lone_datagram` builds the one packet itself. Whatever else can make
        something pending (data or frames we write, a packet that asks for an ACK, a loss,
        a timer) goes through :meth:`transmit`, which sends it and checks anew.
        """
        quic = self._quic
        if not self._flushed or quic._state is not QuicConnectionState.CONNECTED:
            return False
        if quic._datagrams_pending or quic._close_pending or quic._probe_pending:
            return False
        for space in quic._loss.spaces:
            if space.ack_at is not None:
                return False
        if addr is not None:
            paths = quic._network_paths
            if len(paths) != 1 or paths[0].addr != addr:
                return False
        return True

    def _idle(self) -> bool:
        """Whether the connection has nothing at all waiting to be sent: no ACK owed, no
        data, datagram, probe or control frame pending, no stream to retire, no path to
        validate (the whole check, after each :meth:`transmit` of a spectator's)."""
        quic = self._quic
        if (
            quic._state is not QuicConnectionState.CONNECTED
            or not quic._handshake_confirmed
            or quic._close_pending
            or quic._probe_pending
            or quic._ping_pending
            or quic._datagrams_pending
            or quic._handshake_done_pending
            or quic._streams_blocked_pending
            or quic._retire_connection_ids
            or self._requests
            or len(quic._network_paths) != 1
        ):
            return False
        path = quic._network_paths[0]
        if not path.is_validated or path.remote_challenges:
            return False
        for space in quic._loss.spaces:
            if space.ack_at is not None:
                return False
        for cid in quic._host_cids:
            if not cid.was_sent:
                return False
        max_data = quic._local_max_data
        if max_data.used * 2 > max_data.value:
            return False
        for limit in (max_data, quic._local_max_streams_bidi, quic._local_max_streams_uni):
            if limit.value != limit.sent:
                return False
        for stream in quic._streams.values():
            sender, local = stream.sender, stream.max_stream_data_local
            if (
                stream.is_finished
                or not sender.buffer_is_empty
                or sender.reset_pending
                or stream.receiver.stop_pending
                or stream.max_stream_data_local_sent != local
                or (local and stream.receiver.highest_offset * 2 > local)
            ):
                return False
        return all(stream.sender.buffer_is_empty for stream in quic._crypto_streams.values())

    def send_lone_datagram(self, payload: bytes) -> bool:
        """Send ``payload`` as a DATAGRAM frame alone in a packet, if the connection is
        :meth:`_quiet` and neither pacing nor the congestion window holds it back; False
        (nothing done) otherwise. The packet is numbered, protected and registered for
        loss recovery by aioquic's own builder and bookkeeping, as :meth:`transmit`
        would."""
        quic, transport = self._quic, self._transport
        if transport is None or quic._version is None or not self._quiet():
            return False
        now = self._loop.time()
        loss = quic._loss
        if loss._pacer.next_send_time(now=now) is not None:
            return False
        room = loss.congestion_window - loss.bytes_in_flight
        if room < len(payload) + LONE_PACKET_OVERHEAD:
            return False
        builder = QuicPacketBuilder(
            host_cid=quic.host_cid,
            is_client=quic._is_client,
            max_datagram_size=quic._max_datagram_size,
            packet_number=quic._packet_number,
            peer_cid=quic._peer_cid.cid,
            peer_token=quic._peer_token,
            quic_logger=quic._quic_logger,
            spin_bit=quic._spin_bit,
            version=quic._version,
        )
        builder.max_flight_bytes = room
        try:
            builder.start_packet(QuicPacketType.ONE_RTT, quic._cryptos[Epoch.ONE_RTT])
            quic._write_datagram_frame(
                builder=builder, data=payload, frame_type=QuicFrameType.DATAGRAM_WITH_LENGTH
            )
        except QuicPacketBuilderStop:  # too big for the packet: aioquic's way decides
            return False
        loss._pacer.update_after_send(now=now)
        path = quic._network_paths[0]
        for datagram, addr in quic._flush_builder(
            builder=builder, network_path=path, peer_cid=quic._peer_cid.cid, now=now
        ):
            transport.sendto(datagram, addr)
        self.lone_datagrams += 1
        self._arm_timer()
        return True

    def _arm_timer(self) -> None:
        """aioquic's timer upkeep at the end of :meth:`transmit`, without the sending."""
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = StaticTableH3(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            self._terminated()
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._headers(event)
        elif isinstance(event, DataReceived):
            request = self._requests.get(event.stream_id)
            if request is not None:
                self._body(event.stream_id, request, event.data, event.stream_ended)
            elif event.stream_ended and event.stream_id in self.sessions:
                ended = self.sessions.pop(event.stream_id)  # the browser ended it
                ended.closed = True
                self.handler.session_closed(ended)
        elif isinstance(event, WebTransportStreamDataReceived):
            session = self.sessions.get(event.session_id)
            if session is not None and event.data:
                self.handler.session_message(session, event.data)

    def _headers(self, event: HeadersReceived) -> None:
        headers = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in event.headers}
        method, path = headers.get(":method", ""), headers.get(":path", "/")
        if method == "CONNECT" and headers.get(":protocol") == "webtransport":
            self._connect(event.stream_id, path)
            return
        request = _Request(method, path)
        self._requests[event.stream_id] = request
        request.timer = self._loop.call_later(
            self.handler.request_timeout_s, self._timed_out, event.stream_id
        )
        if event.stream_ended:
            self._body(event.stream_id, request, b"", True)

    def _connect(self, stream_id: int, path: str) -> None:
        if self.h3 is None:
            return
        session = WebTransportSession(self, stream_id, path)
        self.sessions[stream_id] = session
        if not self.handler.session_opened(path, session):
            del self.sessions[stream_id]
            self.h3.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
            self.transmit()
            return
        self.h3.send_headers(
            stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        )
        self.transmit()

    def _body(self, stream_id: int, request: _Request, data: bytes, ended: bool) -> None:
        if not request.too_large:
            request.body += data
            if len(request.body) > self.handler.max_body:
                request.too_large = True
                request.body = bytearray()
        if not ended:
            return
        del self._requests[stream_id]
        if request.timer is not None:
            request.timer.cancel()
        if request.too_large:
            too_large = Response(413, b'{"error":"oversized","message":"request body too large"}')
            self._respond(stream_id, too_large)
            return
        self._spawn(self._answer(stream_id, request))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, stream_id: int, request: _Request) -> None:
        try:
            response = await self.handler.request(request.method, request.path, bytes(request.body))
        except Exception:
            log.exception("request failed", extra={"path": request.path})
            response = Response(500, b'{"error":"internal","message":"relay error"}')
        self._respond(stream_id, response)

    def _respond(self, stream_id: int, response: Response) -> None:
        if self.h3 is None or self._quic._close_event is not None:
            return
        try:
            self.h3.send_headers(
                stream_id,
                [
                    (b":status", str(response.status).encode()),
                    (b"content-type", response.content_type.encode()),
                    (b"content-length", str(len(response.body)).encode()),
                ],
            )
            self.h3.send_data(stream_id, response.body, end_stream=True)
        except Exception:  # the peer reset the stream meanwhile: nothing to answer
            log.debug("response dropped", extra={"stream": stream_id})
        self.transmit()

    def _timed_out(self, stream_id: int) -> None:
        request = self._requests.pop(stream_id, None)
        if request is not None:
            log.info("request timed out", extra={"path": request.path})
            self._quic.reset_stream(stream_id, H3_REQUEST_CANCELLED)
            self.transmit()

    def _terminated(self) -> None:
        for request in self._requests.values():
            if request.timer is not None:
                request.timer.cancel()
        self._requests.clear()
        for session in self.sessions.values():
            session.closed = True
            self.handler.session_closed(session)
        self.sessions.clear()


def _discard(*_args: Any, **_kwargs: Any) -> None:
    """A log call that does nothing."""


class SessionTickets:
    """Session tickets for resumption (0-RTT reconnects of trackers), bounded."""

    def __init__(self, limit: int = 10_000) -> None:
        self._tickets: OrderedDict[bytes, SessionTicket] = OrderedDict()
        self._limit = limit

    def add(self, ticket: SessionTicket) -> None:
        """Remember a ticket the server issued."""
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > self._limit:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> SessionTicket | None:
        """The ticket a client presents (single use)."""
        return self._tickets.pop(label, None)


def quic_configuration(cert_path: str, key_path: str) -> QuicConfiguration:
    """Server configuration: HTTP/3 with datagrams (WebTransport), idle timeout."""
    config = QuicConfiguration(
        alpn_protocols=H3_ALPN,
        is_client=False,
        max_datagram_frame_size=65_536,
        idle_timeout=IDLE_TIMEOUT_S,
    )
    config.load_cert_chain(cert_path, key_path)
    return config


class _ProtocolsByCid(dict[bytes, QuicConnectionProtocol]):
    """aioquic's connection-id → protocol table, also indexed the other way round."""

    def __init__(self) -> None:
        super().__init__()
        self.cids: dict[QuicConnectionProtocol, set[bytes]] = {}

    def __setitem__(self, cid: bytes, protocol: QuicConnectionProtocol) -> None:
        old = self.get(cid)
        if old is not None and old is not protocol:
            self._forget(cid, old)
        super().__setitem__(cid, protocol)
        self.cids.setdefault(protocol, set()).add(cid)

    def __delitem__(self, cid: bytes) -> None:
        protocol = self[cid]
        super().__delitem__(cid)
        self._forget(cid, protocol)

    def clear(self) -> None:
        super().clear()
        self.cids.clear()

    def _forget(self, cid: bytes, protocol: QuicConnectionProtocol) -> None:
        cids = self.cids.get(protocol)
        if cids is not None:
            cids.discard(cid)
            if not cids:
                del self.cids[protocol]


class RelayQuicServer(QuicServer):
    """aioquic's server, with a closing connection's ids found by index.

    aioquic scans every connection id it holds for each connection that ends: with
    thousands of spectators, trackers reconnecting and handshakes timing out, that scan
    took 42 % of the relay's CPU in ``bench.fanout``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._protocols = _ProtocolsByCid()

    def _connection_terminated(self, protocol: QuicConnectionProtocol) -> None:
        table = self._protocols
        assert isinstance(table, _ProtocolsByCid)
        for cid in list(table.cids.get(protocol, ())):
            del table[cid]


GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two collections of the garbage collector's youngest generation
(Python's default: 700)."""


def settle_heap() -> None:
    """Tune the garbage collector for a process holding thousands of QUIC connections.

    Everything made while starting (modules, classes, the races' courses) goes out of the
    collector's sight (``gc.freeze``). And aioquic makes a few objects per packet that
    live until the packet's ACK, tens of milliseconds: at Python's default threshold the
    young collections ran every hundred datagrams or so, carried those objects into the
    older generations and made the collector walk them again and again — 13 % of a fan-out
    worker's CPU with 3,500 sessions. A young generation of :data:`GC_YOUNG_THRESHOLD`
    lets them die young (collections ~17 → ~3 µs per session-second); the oldest
    generation keeps Python's pace, so closed connections' cycles are still freed.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(middle, 20), oldest)


UDP_BUFFER_BYTES = 4 * 1024 * 1024
"""Receive/send buffer asked for a QUIC socket: one tick sends a datagram per session
and their ACKs come back at once (the kernel caps it at net.core.rmem_max/wmem_max)."""


def grow_buffers(sock: socket.socket | None) -> None:
    """Ask for :data:`UDP_BUFFER_BYTES` of socket buffers (a warning when refused)."""
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
        except OSError as exc:
            log.warning("UDP buffer size not set", extra={"detail": str(exc)})


async def serve_h3(
    host: str,
    port: int,
    configuration: QuicConfiguration,
    handler: Handler,
    tickets: SessionTickets,
    on_protocol: Callable[[RelayQuicProtocol], None] | None = None,
    sock: socket.socket | None = None,
) -> QuicServer:
    """Listen on UDP ``host:port`` (port 0: any free port), or on the bound ``sock``."""

    def create(*args: Any, **kwargs: Any) -> RelayQuicProtocol:
        protocol = RelayQuicProtocol(*args, handler=handler, **kwargs)
        if on_protocol is not None:
            on_protocol(protocol)
        return protocol

    loop = asyncio.get_running_loop()

    def factory() -> RelayQuicServer:
        return RelayQuicServer(
            configuration=configuration,
            create_protocol=create,
            session_ticket_fetcher=tickets.pop,
            session_ticket_handler=tickets.add,
        )

    if sock is not None:
        _, server = await loop.create_datagram_endpoint(factory, sock=sock)
    else:
        _, server = await loop.create_datagram_endpoint(factory, local_addr=(host, port))
    return server
