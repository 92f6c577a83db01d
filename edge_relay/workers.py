"""Fan-out worker processes: the relay's spectators spread over every core.

One aioquic process sends about 3,000 datagrams a second here (``bench.fanout``), so a
relay with thousands of spectators runs ``--fanout-workers N`` processes next to its main
one. The workers share one UDP *spectator port* (``SO_REUSEPORT``: the kernel keeps each
connection's packets on one worker) and serve only WebTransport sessions on
``/live/RACE``; trackers, ingest, scoring and the WebSocket fallback stay in the main
process, which makes each race's frames once and hands the encoded bytes to every worker
over a ``SOCK_SEQPACKET`` socket pair (one message per frame: never torn, never blocking
the main loop — a worker that falls behind misses a frame, as a datagram could).

Messages are msgpack lists. Main → worker: ``["frame", race_id, bytes]`` (a snapshot
becomes the worker's base for joins), ``["races", [ids]]``, ``["certificate", cert, key]``.
Worker → main: ``["ready"]`` once its ports are bound (a worker that cannot bind stops
the relay's start with an error), then ``["audience", {race_id: sessions}, datagrams
sent, connections accepted]`` twice a second, which the main process counts in its frame
budget, its heartbeat, ``/api/info`` and ``/metrics``. On the request stream (length-
prefixed msgpack): worker → main ``["request", id, method, path, body]``, main → worker
``["answer", id, status, body, content_type]``.

**Trackers too.** The workers also join the relay's tracker port (``SO_REUSEPORT`` with
the main process), so a second's burst of uploads is taken in by every process at once:
a worker does the QUIC and HTTP/3 work of the uploads that land on it and hands each
request (method, path, body) to the main process over a stream socket pair (bodies up to
the upload limit), which verifies, stores and answers it as if it had come in itself;
the answer goes back the same way. Requests carry no connection state (a session hello
is the device's, not the connection's), so any process may take any of them. A tracker
whose connection lands on another process after a worker restart connects again, as
after any lost connection (without 0-RTT the first time: tickets are per process).

A worker that dies while the relay runs is started again (after RESPAWN_DELAY_S, backing
off to RESPAWN_MAX_DELAY_S while it keeps failing) and given each race's newest frames;
its spectators' browsers reconnect to the same port and land on the workers left or on
the new one. ``restarts`` counts them (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import multiprocessing
import re
import signal
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable
from multiprocessing.context import SpawnProcess
from typing import Any

import msgpack

from sync_protocol.frames import FrameKind, fits_datagram, peek_kind
from sync_protocol.upload import MAX_UPLOAD_BYTES

from .h3 import (
    Response,
    SessionTickets,
    WebTransportSession,
    grow_buffers,
    quic_configuration,
    serve_h3,
    settle_heap,
)

log = logging.getLogger("gruppetto.relay.workers")

LIVE_PATH = re.compile(r"^/live/(\d+)$")
MAX_MESSAGE = 1 << 20
AUDIENCE_EVERY_S = 0.5
READY_TIMEOUT_S = 30.0
"""How long a worker may take to start and bind the spectator port."""
PR_SET_PDEATHSIG = 1
RESPAWN_DELAY_S = 0.5
RESPAWN_MAX_DELAY_S = 30.0

REQUEST_HEADER = struct.Struct(">I")
"""A request-stream message: its length, then msgpack."""
MAX_REQUEST_MESSAGE = MAX_UPLOAD_BYTES + 64 * 1024
FORWARD_TIMEOUT_S = 30.0
"""How long a worker waits for the main process to answer a forwarded request."""

Snapshot = Callable[[], Iterable[tuple[int, bytes, bytes]]]
"""``(race_id, base, newest frame)`` of every race that has frames (for a new worker)."""
RequestHandler = Callable[[str, str, bytes], Awaitable[Response]]
"""The main process's answer to a tracker request (``Relay.request``)."""


def _pack(message: list[Any]) -> bytes:
    return bytes(msgpack.packb(message, use_bin_type=True))


class FanoutWorkers:
    """The main process's side: start, feed, count and stop the workers."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        certificate: tuple[str, str],
        races: Iterable[int],
        snapshot: Snapshot,
        tracker_port: int | None = None,
        requests: RequestHandler | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        """``tracker_port`` (bound by the main process with ``SO_REUSEPORT``) is shared
        too when given, with the tracker requests that land on a worker answered by
        ``requests``."""
        if count < 1:
            raise ValueError("at least one fan-out worker")
        self.count = count
        self.host = host
        self.port = port
        """The spectator port (0 until started when asked for any free port)."""
        self._certificate = certificate
        self._races = sorted(set(races))
        self._snapshot = snapshot
        self._tracker_port = tracker_port
        self._request_timeout_s = request_timeout_s
        self._requests = requests
        self._serving: list[asyncio.Task[None]] = []
        self._answering: set[asyncio.Task[None]] = set()
        self._connections: list[int] = []
        self._connections_before = 0
        self.forwarded = 0
        """Tracker requests the workers took in and the main process answered."""
        self._processes: list[SpawnProcess] = []
        self._sockets: list[socket.socket] = []
        self._audiences: list[dict[int, int]] = []
        self._datagrams: list[int] = []
        self._ready: list[asyncio.Future[bool]] = []
        self._counted = [0] * count
        """Datagrams sent by each worker's earlier processes (the counter never goes back)."""
        self._stopping = False
        self._respawning: set[asyncio.Task[None]] = set()
        self.dropped = 0
        """Messages a worker was too far behind to take."""
        self.restarts = 0
        """Workers started again after dying."""

    async def start(self) -> int:
        """Start the workers on the spectator port; returns it."""
        if self.port == 0:
            self.port = _free_udp_port(self.host)
        for index in range(self.count):
            self._spawn(index)
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                started = await asyncio.gather(*self._ready)
        except TimeoutError:
            started = [f.done() and f.result() for f in self._ready]
        if not all(started):
            await self.stop()
            raise OSError(
                f"fan-out workers could not serve WebTransport on UDP {self.host}:{self.port} "
                "(is the port taken? see the relay's log)"
            )
        for index in range(self.count):
            self._catch_up(index)
        return self.port

    def _spawn(self, index: int) -> None:
        """Start worker ``index`` (a new one, or in the place of one that died)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        asks, answers = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ports = (self.port, self._tracker_port)
        process = multiprocessing.get_context("spawn").Process(
            target=worker_main,
            args=(
                theirs,
                answers,
                index,
                self.host,
                ports,
                self._certificate,
                self._races,
                self._request_timeout_s,
            ),
            name=f"relay-fanout-{index}",
            daemon=True,
        )
        process.start()
        theirs.close()
        answers.close()
        ours.setblocking(False)
        asks.setblocking(False)
        loop = asyncio.get_running_loop()
        serving = loop.create_task(self._serve_requests(asks))
        if index == len(self._serving):
            self._serving.append(serving)
            self._connections.append(0)
        else:
            self._serving[index].cancel()
            self._serving[index] = serving
            self._connections_before += self._connections[index]
            self._connections[index] = 0
        ready: asyncio.Future[bool] = loop.create_future()
        if index == len(self._processes):
            self._processes.append(process)
            self._sockets.append(ours)
            self._audiences.append({})
            self._datagrams.append(0)
            self._ready.append(ready)
        else:
            self._processes[index], self._sockets[index], self._ready[index] = (
                process,
                ours,
                ready,
            )
            self._audiences[index] = {}
            self._counted[index] += self._datagrams[index]
            self._datagrams[index] = 0
        loop.add_reader(ours.fileno(), self._read, index)

    def _catch_up(self, index: int) -> None:
        """Give worker ``index`` each race's base and newest frame (for its joins)."""
        for race_id, base, last in self._snapshot():
            self._send(index, ["frame", race_id, base])
            if last != base:
                self._send(index, ["frame", race_id, last])

    async def _respawn(self, index: int) -> None:
        """Start a dead worker again, backing off while it cannot start."""
        delay = RESPAWN_DELAY_S
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            dead, sock = self._processes[index], self._sockets[index]
            await asyncio.to_thread(dead.join, 5)
            if sock.fileno() >= 0:
                asyncio.get_running_loop().remove_reader(sock.fileno())
                sock.close()
            self._spawn(index)
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    started = await self._ready[index]
            except TimeoutError:
                started = False
            if started:
                self.restarts += 1
                self._catch_up(index)
                log.warning("fan-out worker started again", extra={"worker": index})
                return
            log.error("fan-out worker could not start again", extra={"worker": index})
            self._processes[index].kill()
            delay = min(delay * 2, RESPAWN_MAX_DELAY_S)

    def publish(self, race_id: int, frame: bytes) -> None:
        """A race's new frame, as sent to the main process's own sessions."""
        for index in range(len(self._sockets)):
            self._send(index, ["frame", race_id, frame])

    def races(self, race_ids: Iterable[int]) -> None:
        """The races served changed."""
        self._races = sorted(set(race_ids))
        for index in range(len(self._sockets)):
            self._send(index, ["races", self._races])

    def certificate(self, cert_path: str, key_path: str) -> None:
        """The relay's certificate was renewed: new connections use the new one."""
        self._certificate = (cert_path, key_path)
        for index in range(len(self._sockets)):
            self._send(index, ["certificate", cert_path, key_path])

    def audience(self, race_id: int) -> int:
        """Sessions watching ``race_id`` on the workers."""
        return sum(a.get(race_id, 0) for a in self._audiences)

    @property
    def datagrams(self) -> int:
        """Datagrams the workers have sent (frames to their sessions)."""
        return sum(self._datagrams) + sum(self._counted)

    @property
    def connections(self) -> int:
        """QUIC connections the workers have accepted (trackers and spectators)."""
        return sum(self._connections) + self._connections_before

    @property
    def sessions(self) -> int:
        """Sessions on all workers."""
        return sum(sum(a.values()) for a in self._audiences)

    @property
    def alive(self) -> int:
        """Workers running."""
        return sum(1 for p in self._processes if p.is_alive())

    async def stop(self) -> None:
        """Stop every worker (they also stop on their own when this process dies)."""
        self._stopping = True
        for task in [*self._respawning, *self._serving, *self._answering]:
            task.cancel()
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
                sock.close()  # the worker sees the end of its socket and exits
        for process in self._processes:
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.kill()
        self._sockets.clear()

    async def _serve_requests(self, sock: socket.socket) -> None:
        """Answer the tracker requests one worker took in, until its stream ends."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_REQUEST_MESSAGE)
        try:
            while True:
                message = await _read_message(reader)
                if message is None:
                    return
                if message[0] != "request" or self._requests is None:
                    continue
                task = asyncio.create_task(self._answer(writer, message))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, message: list[Any]) -> None:
        _, request_id, method, path, body = message
        assert self._requests is not None
        try:
            response = await self._requests(str(method), str(path), bytes(body))
        except Exception:
            log.exception("forwarded request failed", extra={"path": path})
            response = Response(500, b'{"error":"internal","message":"relay error"}')
        self.forwarded += 1
        if writer.is_closing():
            return  # the worker died meanwhile: its tracker asks again
        answer = ["answer", request_id, response.status, response.body, response.content_type]
        writer.write(_frame_message(answer))
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    def _send(self, index: int, message: list[Any]) -> None:
        try:
            self._sockets[index].send(_pack(message))
        except (BlockingIOError, ConnectionError, OSError):
            self.dropped += 1

    def _read(self, index: int) -> None:
        sock = self._sockets[index]
        while True:
            try:
                data = sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the worker died: forget its sessions, start it again
                loop = asyncio.get_running_loop()
                loop.remove_reader(sock.fileno())
                self._audiences[index] = {}
                if not self._ready[index].done():
                    self._ready[index].set_result(False)  # still starting: _respawn retries
                    return
                log.error("fan-out worker stopped", extra={"worker": index})
                if not self._stopping:
                    task = loop.create_task(self._respawn(index))
                    self._respawning.add(task)
                    task.add_done_callback(self._respawning.discard)
                return
            message = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if message[0] == "ready" and not self._ready[index].done():
                self._ready[index].set_result(True)
            elif message[0] == "audience":
                self._audiences[index] = {int(k): int(v) for k, v in message[1].items()}
                self._datagrams[index] = int(message[2])
                self._connections[index] = int(message[3])


def _frame_message(message: list[Any]) -> bytes:
    data = _pack(message)
    return REQUEST_HEADER.pack(len(data)) + data


async def _read_message(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next request-stream message, or None at the end of the stream."""
    try:
        header = await reader.readexactly(REQUEST_HEADER.size)
        (size,) = REQUEST_HEADER.unpack(header)
        if size > MAX_REQUEST_MESSAGE:
            log.error("request stream broken", extra={"size": size})
            return None
        data = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = msgpack.unpackb(data, raw=False)
    return message if isinstance(message, list) and message else None


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` that other processes may join (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        grow_buffers(sock)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# -- in the worker process -----------------------------------------------------------------


def worker_main(
    channel: socket.socket,
    requests: socket.socket,
    index: int,
    host: str,
    ports: tuple[int, int | None],
    certificate: tuple[str, str],
    races: list[int],
    request_timeout_s: float = 30.0,
) -> None:
    """Process entry: serve WebTransport spectators (on the spectator port and, when
    given, the tracker port) and forward tracker requests, until the main process goes
    away."""
    with contextlib.suppress(OSError, AttributeError):  # Linux: die with the relay
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        worker = _Worker(channel, requests, index, races)
        worker.request_timeout_s = request_timeout_s  # a half-open upload, as in the main one
        asyncio.run(worker.serve(host, ports, certificate))


class _Worker:
    """One worker's sessions and the newest frames of each race."""

    max_body = MAX_UPLOAD_BYTES
    request_timeout_s = 30.0

    def __init__(
        self, channel: socket.socket, requests: socket.socket, index: int, races: list[int]
    ) -> None:
        self.channel = channel
        self.requests = requests
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._next_id = 0
        self.connections = 0
        self.index = index
        self.races = set(races)
        self.sessions: dict[int, set[WebTransportSession]] = {}
        self.base: dict[int, bytes] = {}
        self.last: dict[int, bytes] = {}
        self.done = asyncio.Event()
        self.servers: list[Any] = []
        self.datagrams = 0

    async def serve(
        self, host: str, ports: tuple[int, int | None], certificate: tuple[str, str]
    ) -> None:
        configuration, tickets = quic_configuration(*certificate), SessionTickets()
        for port in ports:
            if port is None:
                continue
            server = await serve_h3(
                host,
                port,
                configuration,
                self,
                tickets,
                on_protocol=self._connection_made,
                sock=reuse_port_socket(host, port),
            )
            self.servers.append(server)
        reader, self._writer = await asyncio.open_unix_connection(
            sock=self.requests, limit=MAX_REQUEST_MESSAGE
        )
        answers = asyncio.create_task(self._answers(reader))
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        settle_heap()  # as the main process does
        self.channel.send(_pack(["ready"]))
        loop.add_reader(self.channel.fileno(), self._read)
        counting = asyncio.create_task(self._count())
        try:
            await self.done.wait()
        finally:
            counting.cancel()
            answers.cancel()
            for server in self.servers:
                server.close()

    # -- the Handler protocol of edge_relay.h3 --------------------------------------

    async def request(self, method: str, path: str, body: bytes) -> Response:
        """A tracker's request: answered by the main process."""
        if self._writer is None or self._writer.is_closing():
            return _busy("the relay is restarting")
        self._next_id += 1
        request_id = self._next_id
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        try:
            self._writer.write(_frame_message(["request", request_id, method, path, body]))
            async with asyncio.timeout(FORWARD_TIMEOUT_S):
                await self._writer.drain()
                return await answer
        except (TimeoutError, ConnectionError):
            return _busy("the relay did not answer in time")
        finally:
            self._waiting.pop(request_id, None)

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        while (message := await _read_message(reader)) is not None:
            if message[0] != "answer":
                continue
            _, request_id, status, body, content_type = message
            waiting = self._waiting.get(int(request_id))
            if waiting is not None and not waiting.done():
                waiting.set_result(Response(int(status), bytes(body), str(content_type)))
        for waiting in self._waiting.values():  # the main process is gone
            if not waiting.done():
                waiting.set_result(_busy("the relay is restarting"))

    def _connection_made(self, _protocol: object) -> None:
        self.connections += 1

    def session_opened(self, path: str, session: WebTransportSession) -> bool:
        match = LIVE_PATH.match(path)
        if match is None or int(match[1]) not in self.races:
            return False
        race_id = int(match[1])
        self.sessions.setdefault(race_id, set()).add(session)
        session.state = race_id
        asyncio.get_running_loop().call_soon(self._welcome, session)
        return True

    def session_closed(self, session: WebTransportSession) -> None:
        if isinstance(session.state, int):
            self.sessions.get(session.state, set()).discard(session)

    def session_message(self, session: WebTransportSession, data: bytes) -> None:
        base = self.base.get(session.state) if isinstance(session.state, int) else None
        if base is not None:  # the browser lost its base: a fresh one on a stream
            session.send_on_stream(base)

    # -- frames ---------------------------------------------------------------------

    def _welcome(self, session: WebTransportSession) -> None:
        race_id = session.state
        base, last = self.base.get(race_id), self.last.get(race_id)
        if base is not None:
            session.send_on_stream(base)
            if last is not None and last != base:
                self.datagrams += _send(session, last)

    def _frame(self, race_id: int, frame: bytes) -> None:
        if peek_kind(frame) is FrameKind.SNAPSHOT:
            self.base[race_id] = frame
        self.last[race_id] = frame
        for session in [s for s in self.sessions.get(race_id, ()) if not s.closed]:
            self.datagrams += _send(session, frame)

    def _read(self) -> None:
        while True:
            try:
                data = self.channel.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the main process is gone
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
                self.done.set()
                return
            message = msgpack.unpackb(data, raw=False)
            kind = message[0]
            if kind == "frame":
                self._frame(int(message[1]), bytes(message[2]))
            elif kind == "races":
                self.races = {int(r) for r in message[1]}
            elif kind == "certificate":
                configuration = quic_configuration(message[1], message[2])
                for server in self.servers:
                    server._configuration = configuration

    async def _count(self) -> None:
        while True:
            audience = {r: sum(1 for s in ss if not s.closed) for r, ss in self.sessions.items()}
            with contextlib.suppress(BlockingIOError, OSError):
                self.channel.send(_pack(["audience", audience, self.datagrams, self.connections]))
            await asyncio.sleep(AUDIENCE_EVERY_S)


def _busy(reason: str) -> Response:
    doc = {"error": "busy", "message": f"{reason}: try again"}
    return Response(503, json.dumps(doc).encode())


def _send(session: WebTransportSession, frame: bytes) -> int:
    """Send a frame as a datagram (1) or, too big for one, on a stream (0)."""
    if fits_datagram(frame):
        session.send_datagram(frame)
        return 1
    session.send_on_stream(frame)
    return 0
