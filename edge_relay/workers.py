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
Worker → main: ``["ready"]`` once its port is bound (a worker that cannot bind stops
the relay's start with an error), then ``["audience", {race_id: sessions}, datagrams
sent]`` twice a second, which the main process counts in its frame budget, its
heartbeat, ``/api/info`` and ``/metrics``.

A worker that dies while the relay runs is started again (after RESPAWN_DELAY_S, backing
off to RESPAWN_MAX_DELAY_S while it keeps failing) and given each race's newest frames;
its spectators' browsers reconnect to the same port and land on the workers left or on
the new one. ``restarts`` counts them (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import multiprocessing
import re
import signal
import socket
from collections.abc import Callable, Iterable
from multiprocessing.context import SpawnProcess
from typing import Any

import msgpack

from sync_protocol.frames import FrameKind, fits_datagram, peek_kind

from .h3 import (
    Response,
    SessionTickets,
    WebTransportSession,
    grow_buffers,
    quic_configuration,
    serve_h3,
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

Snapshot = Callable[[], Iterable[tuple[int, bytes, bytes]]]
"""``(race_id, base, newest frame)`` of every race that has frames (for a new worker)."""


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
    ) -> None:
        if count < 1:
            raise ValueError("at least one fan-out worker")
        self.count = count
        self.host = host
        self.port = port
        """The spectator port (0 until started when asked for any free port)."""
        self._certificate = certificate
        self._races = sorted(set(races))
        self._snapshot = snapshot
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
        process = multiprocessing.get_context("spawn").Process(
            target=worker_main,
            args=(theirs, index, self.host, self.port, self._certificate, self._races),
            name=f"relay-fanout-{index}",
            daemon=True,
        )
        process.start()
        theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
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
        for task in self._respawning:
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


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# -- in the worker process -----------------------------------------------------------------


def worker_main(
    channel: socket.socket,
    index: int,
    host: str,
    port: int,
    certificate: tuple[str, str],
    races: list[int],
) -> None:
    """Process entry: serve WebTransport spectators until the main process goes away."""
    with contextlib.suppress(OSError, AttributeError):  # Linux: die with the relay
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Worker(channel, index, races).serve(host, port, certificate))


class _Worker:
    """One worker's sessions and the newest frames of each race."""

    max_body = 1024
    request_timeout_s = 10.0

    def __init__(self, channel: socket.socket, index: int, races: list[int]) -> None:
        self.channel = channel
        self.index = index
        self.races = set(races)
        self.sessions: dict[int, set[WebTransportSession]] = {}
        self.base: dict[int, bytes] = {}
        self.last: dict[int, bytes] = {}
        self.done = asyncio.Event()
        self.server: Any = None
        self.datagrams = 0

    async def serve(self, host: str, port: int, certificate: tuple[str, str]) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        grow_buffers(sock)
        sock.bind((host, port))
        self.server = await serve_h3(
            host, port, quic_configuration(*certificate), self, SessionTickets(), sock=sock
        )
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        gc.collect()  # as the main process does (edge_relay.serve.settle_heap)
        gc.freeze()
        self.channel.send(_pack(["ready"]))
        loop.add_reader(self.channel.fileno(), self._read)
        counting = asyncio.create_task(self._count())
        try:
            await self.done.wait()
        finally:
            counting.cancel()
            self.server.close()

    # -- the Handler protocol of edge_relay.h3 --------------------------------------

    async def request(self, method: str, path: str, body: bytes) -> Response:
        doc = {"error": "not-found", "message": "this port serves live WebTransport only"}
        return Response(404, json.dumps(doc).encode())

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
                self.server._configuration = quic_configuration(message[1], message[2])

    async def _count(self) -> None:
        while True:
            audience = {r: sum(1 for s in ss if not s.closed) for r, ss in self.sessions.items()}
            with contextlib.suppress(BlockingIOError, OSError):
                self.channel.send(_pack(["audience", audience, self.datagrams]))
            await asyncio.sleep(AUDIENCE_EVERY_S)


def _send(session: WebTransportSession, frame: bytes) -> int:
    """Send a frame as a datagram (1) or, too big for one, on a stream (0)."""
    if fits_datagram(frame):
        session.send_datagram(frame)
        return 1
    session.send_on_stream(frame)
    return 0
