"""A spectator's quiet connection: datagrams sent and ACKs taken in without aioquic's
full pass, and everything else (streams, replies, losses) still the stock way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_relay.h3 import (
    RelayQuicProtocol,
    Response,
    SessionTickets,
    WebTransportSession,
    quic_configuration,
    serve_h3,
)
from edge_relay.tls import ensure_certificate
from tests.edge_relay.wt import Spectator, spectator


class Sessions:
    """A handler keeping the sessions opened on /live/1 and what they wrote."""

    max_body = 1 << 16
    request_timeout_s = 10.0

    def __init__(self) -> None:
        self.sessions: list[WebTransportSession] = []
        self.messages: list[bytes] = []

    async def request(self, method: str, path: str, body: bytes) -> Response:
        return Response(404, b"")

    def session_opened(self, path: str, session: WebTransportSession) -> bool:
        self.sessions.append(session)
        return path == "/live/1"

    def session_closed(self, session: WebTransportSession) -> None:
        pass

    def session_message(self, session: WebTransportSession, data: bytes) -> None:
        self.messages.append(data)


class Lossy:
    """The server's transport, dropping the datagrams of one connection while told to."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.dropping = False
        self.dropped = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        if self.dropping:
            self.dropped += 1
            return
        self.transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


def got(client: Spectator, count: int) -> Callable[[], bool]:
    return lambda: len(client.datagrams) == count


def last_is(client: Spectator, datagram: bytes) -> Callable[[], bool]:
    return lambda: client.datagrams[-1:] == [datagram]


def serve(
    tmp_path: Path, body: Callable[[Sessions, Spectator, RelayQuicProtocol], Awaitable[None]]
) -> None:
    cert = ensure_certificate(tmp_path, ["127.0.0.1"], datetime.now(UTC))
    config = quic_configuration(str(cert.cert_path), str(cert.key_path))

    async def go() -> None:
        handler = Sessions()
        server = await serve_h3("127.0.0.1", 0, config, handler, SessionTickets())
        port = server._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        try:
            async with spectator(port, "/live/1") as client:
                assert await client.status == 200
                await until(lambda: len(handler.sessions) == 1, "the session opened")
                protocol = handler.sessions[0].protocol
                await body(handler, client, protocol)
        finally:
            server.close()

    asyncio.run(go())


def test_datagrams_and_their_acks_skip_the_full_pass_and_all_arrive(tmp_path: Path) -> None:
    async def body(handler: Sessions, client: Spectator, protocol: RelayQuicProtocol) -> None:
        session = handler.sessions[0]
        await asyncio.sleep(0.1)  # the handshake's last packets settle
        for n in range(30):
            session.send_datagram(b"tick %d" % n)
            await until(got(client, n + 1), f"datagram {n}")
            await asyncio.sleep(0.04)  # the client's delayed ACK comes back
        assert client.datagrams == [b"tick %d" % n for n in range(30)]
        assert protocol.lone_datagrams >= 25  # not the stock transmit
        assert protocol.quiet_acks >= 20  # ACK-only packets: the timer re-armed, no pass
        assert protocol._timer is not None  # the idle timeout stays armed

        # a stream from the relay, the browser's reply on it, then datagrams again
        session.send_on_stream(b"snapshot")
        await until(lambda: client.stream_frames == [b"snapshot"], "the stream's data")
        stream_id = next(iter(client.streams))
        client.reply_on(stream_id, b"lost my base")
        await until(lambda: handler.messages == [b"lost my base"], "the reply")
        for n in range(30, 40):
            session.send_datagram(b"tick %d" % n)
            await until(got(client, n + 1), f"datagram {n}")
            await asyncio.sleep(0.04)
        assert client.datagrams[-1] == b"tick 39"
        assert client.closed_with is None

    serve(tmp_path, body)


def test_lost_datagrams_send_the_stock_way_until_the_connection_is_quiet_again(
    tmp_path: Path,
) -> None:
    async def body(handler: Sessions, client: Spectator, protocol: RelayQuicProtocol) -> None:
        session = handler.sessions[0]
        await asyncio.sleep(0.1)
        lossy = Lossy(protocol._transport)
        protocol._transport = lossy  # type: ignore[assignment]
        lossy.dropping = True
        for n in range(5):  # never reach the client: aioquic declares them lost
            session.send_datagram(b"lost %d" % n)
            await asyncio.sleep(0.02)
        lossy.dropping = False
        session.send_on_stream(b"after the loss")
        await until(lambda: protocol._losses > 0, "the losses detected")
        await until(lambda: client.stream_frames == [b"after the loss"], "the stream")
        before = protocol.lone_datagrams
        for n in range(10):
            session.send_datagram(b"tick %d" % n)
            await until(last_is(client, b"tick %d" % n), f"datagram {n}")
            await asyncio.sleep(0.04)
        assert lossy.dropped >= 5
        assert not any(d.startswith(b"lost") for d in client.datagrams)
        assert protocol.lone_datagrams > before  # quiet again once the loss is behind
        await until(lambda: protocol._quic._loss.bytes_in_flight == 0, "everything acked")
        assert client.closed_with is None

    serve(tmp_path, body)
