"""A small HTTP/3 client on aioquic, for talking to servers under test over QUIC."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import asynccontextmanager
from typing import Any, cast

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent


class H3Client(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3; ``request()`` returns (status, headers, body)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self._waiting: dict[int, asyncio.Future[list[H3Event]]] = {}
        self._events: dict[int, list[H3Event]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, HeadersReceived | DataReceived):
                stream = h3_event.stream_id
                self._events.setdefault(stream, []).append(h3_event)
                if h3_event.stream_ended and stream in self._waiting:
                    self._waiting.pop(stream).set_result(self._events.pop(stream))

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        stream = self._quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        if body:
            fields.append((b"content-length", str(len(body)).encode()))
        self.http.send_headers(stream, fields, end_stream=not body)
        if body:
            self.http.send_data(stream, body, end_stream=True)
        done = asyncio.get_running_loop().create_future()
        self._waiting[stream] = done
        self.transmit()
        events = await asyncio.wait_for(done, timeout=10)
        status, reply_headers, data = 0, {}, b""
        for event in events:
            if isinstance(event, HeadersReceived):
                for key, value in event.headers:
                    if key == b":status":
                        status = int(value)
                    else:
                        reply_headers[key.decode()] = value.decode()
            elif isinstance(event, DataReceived):
                data += event.data
        return status, reply_headers, data


@asynccontextmanager
async def h3_client(host: str, port: int) -> AsyncIterator[H3Client]:
    """Connect over QUIC (self-signed server certificates accepted, as in tests)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    async with connect(host, port, configuration=config, create_protocol=H3Client) as client:
        yield cast(H3Client, client)


class BlockingH3:
    """One HTTP/3 connection for blocking tests: its event loop runs on a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._ready: Future[H3Client] = Future()
        self._stop: asyncio.Event | None = None
        self._held = asyncio.run_coroutine_threadsafe(self._hold(host, port), self.loop)
        wait([self._ready, self._held], timeout=30, return_when=FIRST_COMPLETED)
        if not self._ready.done():
            self.close()
            self._held.result(timeout=0)  # the connection's error, if it has one
            raise TimeoutError(f"no QUIC connection to {host}:{port} in 30 s")
        self.client = self._ready.result()

    async def _hold(self, host: str, port: int) -> None:
        self._stop = asyncio.Event()
        async with h3_client(host, port) as client:
            self._ready.set_result(client)
            await self._stop.wait()

    def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on the connection, waited for."""
        work = self.client.request(method, path, body=body, headers=headers)
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    def close(self) -> None:
        """Close the connection and stop the loop."""
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            wait([self._held], timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
