"""HTTP/3 clients on aioquic for relay tests: plain requests and WebTransport sessions.

``Spectator`` opens a WebTransport session (extended CONNECT, ``:protocol
webtransport``) and collects what a browser would: the frames arriving on streams and as
datagrams. It also writes on a server-opened bidirectional stream, which exercises the
aioquic pitfall the relay works around.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from sync_protocol.frames import FrameKind, LiveFrame, decode_frame, peek_kind


class Spectator(QuicConnectionProtocol):
    """One browser-like WebTransport client."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.streams: dict[int, bytes] = {}
        self.stream_frames: list[bytes] = []
        self.datagrams: list[bytes] = []
        self.base: LiveFrame | None = None
        self.frames: list[LiveFrame] = []
        self.stale = 0
        self.closed_with: int | None = None
        self.got_frame = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
            if not self.status.done():
                self.status.set_result(0)
        for h3_event in self.http.handle_event(event):
            self._h3(h3_event)

    def _h3(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id == self.session_id:
            status = dict(event.headers).get(b":status", b"0")
            if not self.status.done():
                self.status.set_result(int(status))
        elif isinstance(event, WebTransportStreamDataReceived):
            self.streams[event.stream_id] = self.streams.get(event.stream_id, b"") + event.data
            if event.stream_ended:
                data = self.streams[event.stream_id]
                self.stream_frames.append(data)
                self._frame(data)
        elif isinstance(event, DatagramReceived):
            self.datagrams.append(event.data)
            self._frame(event.data)

    def _frame(self, data: bytes) -> None:
        try:
            frame = decode_frame(data, self.base)
        except Exception:
            self.stale += 1
            return
        if peek_kind(data) is FrameKind.SNAPSHOT:
            self.base = frame
        self.frames.append(frame)
        self.got_frame.set()

    async def open(self, path: str) -> int:
        """CONNECT to ``path``; returns the response status."""
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
        return await asyncio.wait_for(self.status, timeout=10)

    def reply_on(self, stream_id: int, data: bytes) -> None:
        """Write on a stream the server opened (the pitfall under test)."""
        self._quic.send_stream_data(stream_id, data, end_stream=True)
        self.transmit()

    async def next_frame(self, timeout: float = 10.0) -> LiveFrame:
        """Wait for the next decoded frame."""
        count = len(self.frames)
        while len(self.frames) == count:
            self.got_frame.clear()
            await asyncio.wait_for(self.got_frame.wait(), timeout)
        return self.frames[-1]


def client_config() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        verify_mode=ssl.CERT_NONE,
        max_datagram_frame_size=65_536,
    )


@asynccontextmanager
async def spectator(port: int, path: str) -> AsyncIterator[Spectator]:
    """A WebTransport session on ``path`` (the status is checked by the caller)."""
    async with connect(
        "127.0.0.1", port, configuration=client_config(), create_protocol=Spectator
    ) as client:
        client = cast(Spectator, client)
        await client.open(path)
        yield client
