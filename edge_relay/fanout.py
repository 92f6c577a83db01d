"""Spectator fan-out: one live frame per race per tick to every session, latest wins.

**When frames go out.** GPS receivers fix on the UTC second, so a race's riders arrive
in one burst: a frame goes out when the burst has ended (no new fix for ``quiet_ms``), or
while it goes on, once its first fix has waited the coalescing window. Every frame costs
one datagram per session, so a race has a frame budget: up to ``max_frames_per_interval``
frames in an ``interval_ms`` while its audience is small, fewer as it grows
(``datagrams_per_s`` is what one relay process can send), down to one. The window
stretches as the budget shrinks — ``coalesce_ms`` with the whole budget, twice that with
half of it, and so on — so a small audience sees a long burst in a few frames, each fix
waiting at most the window, and a large one gets the burst whole in its one frame.
Fixes that straggle in after a frame get another as soon as the budget allows.
With no news a heartbeat frame still goes out every ``interval_ms`` (default 1 s), so
fix ages keep counting; it never fires while news keeps coming, so it cannot use up a
burst's budget just before the burst.

**What goes out** (see docs/live-frames.md, "Choosing bases"): every ``keyframe_every``
frames a snapshot becomes the base; the frames between are deltas against it, so a lost
datagram never breaks the next one. WebTransport sessions get each frame as one datagram
(a frame too big for a datagram goes on a stream) and, when they join, the current base
on a stream (a datagram sent with the session's 200 may be dropped). WebSocket clients
get snapshots (their transport is reliable and ordered), each client holding only the
newest one not yet written: a client that never reads costs one frame of memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sync_protocol.frames import (
    FrameKind,
    LiveFrame,
    encode_delta,
    encode_snapshot,
    fits_datagram,
    peek_kind,
)

from .h3 import WebTransportSession

MAX_ARRIVALS = 1_000
MAX_RECENT = 100_000
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000)


@dataclass(slots=True)
class TickPolicy:
    """When a race's frames are produced."""

    interval_ms: int = 1_000
    """Longest time between two frames (the heartbeat, when no news comes)."""
    min_interval_ms: int = 25
    """Shortest time between two frames."""
    coalesce_ms: int = 25
    """Longest wait after a burst's first new fix while the whole frame budget is there
    (it doubles each time the budget halves, up to ``max_coalesce_ms``)."""
    max_coalesce_ms: int = 250
    """Longest coalescing window (the budget is one frame: take the whole burst)."""
    quiet_ms: int = 8
    """A burst has ended when no new fix came for this long."""
    keyframe_every: int = 5
    """A snapshot base every this many frames."""
    max_frames_per_interval: int = 8
    """Most frames a race gets in one ``interval_ms`` (a small audience)."""
    datagrams_per_s: int = 2_000
    """What one relay process sends comfortably: a race's frame budget is this over its
    sessions (at least one frame per interval)."""

    def frames_allowed(self, sessions: int) -> int:
        """Frames per interval for a race watched over ``sessions`` sessions."""
        affordable = self.datagrams_per_s * self.interval_ms // 1000 // max(1, sessions)
        return max(1, min(self.max_frames_per_interval, affordable))

    def coalesce_for(self, allowed: int) -> float:
        """The coalescing window with a budget of ``allowed`` frames per interval."""
        stretch = self.max_frames_per_interval / max(1, allowed)
        return min(float(self.max_coalesce_ms), self.coalesce_ms * stretch)


class SocketClient:
    """A WebSocket spectator: a one-frame mailbox (latest wins) and a wake-up event."""

    def __init__(self) -> None:
        self.pending: bytes | None = None
        """The newest frame not yet written."""
        self.ready = asyncio.Event()
        self.replaced = 0
        """Frames overwritten before the client took them (a slow client)."""

    def offer(self, frame: bytes) -> None:
        """Replace the pending frame with a newer one."""
        if self.pending is not None:
            self.replaced += 1
        self.pending = frame
        self.ready.set()

    async def next_frame(self) -> bytes:
        """Wait for and take the newest frame."""
        await self.ready.wait()
        self.ready.clear()
        frame, self.pending = self.pending, None
        assert frame is not None
        return frame


@dataclass(slots=True)
class FanoutStats:
    """Counters for metrics."""

    frames: int = 0
    """Frames produced (all races)."""
    datagrams: int = 0
    """Datagrams handed to QUIC."""
    stream_frames: int = 0
    """Frames sent on streams (joins, oversized frames)."""
    socket_frames: int = 0
    """Frames offered to WebSocket clients."""
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    """Fix arrival to frame out: how many took at most each of LATENCY_BUCKETS_MS."""
    latency_count: int = 0
    """Latencies recorded."""
    latency_sum_ms: float = 0.0
    """Their sum."""
    recent_ms: list[float] = field(default_factory=list)
    """The latest latencies (bounded; benchmarks read them)."""

    def record(self, latency_ms: float) -> None:
        """Count one fix's arrival-to-frame latency."""
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if latency_ms <= bound:
                self.latency_buckets[i] += 1
        self.latency_count += 1
        self.latency_sum_ms += latency_ms
        if len(self.recent_ms) >= MAX_RECENT:
            del self.recent_ms[: MAX_RECENT // 2]
        self.recent_ms.append(latency_ms)


class RaceChannel:
    """One race's audience and its frame sequence."""

    def __init__(self, race_id: int) -> None:
        self.race_id = race_id
        self.sessions: set[WebTransportSession] = set()
        self.sockets: set[SocketClient] = set()
        self.base: LiveFrame | None = None
        self.base_bytes = b""
        self.last_bytes = b""
        self.last_frame: LiveFrame | None = None
        self.since_base = 0
        self.last_frame_ms = 0.0
        self.arrivals: list[float] = []
        """Monotonic ms at which each fix since the last frame arrived (for latency)."""
        self.timer: asyncio.TimerHandle | None = None
        self.burst_started_ms = 0.0
        self.last_news_ms = 0.0
        self.recent_frames: deque[float] = deque(maxlen=16)
        """Monotonic ms of the latest frames (the frame budget)."""

    def encode(self, frame: LiveFrame, keyframe_every: int) -> bytes:
        """Encode ``frame`` as a snapshot (a new base) or a delta against the base."""
        if self.base is None or self.since_base >= keyframe_every - 1:
            data = encode_snapshot(frame)
        else:
            data = encode_delta(self.base, frame)
        if peek_kind(data) is FrameKind.SNAPSHOT:
            self.base, self.base_bytes, self.since_base = frame, data, 0
        else:
            self.since_base += 1
        self.last_bytes = data
        self.last_frame = frame
        return data


class Workers(Protocol):
    """Other processes' sessions (see :mod:`edge_relay.workers`)."""

    def audience(self, race_id: int) -> int:
        """Sessions they hold for ``race_id``."""

    def publish(self, race_id: int, frame: bytes) -> None:
        """Send them a race's frame."""


class Fanout:
    """Every race's channel, and the ticking that feeds them."""

    def __init__(
        self,
        make_frame: Callable[[int, int], LiveFrame | None],
        policy: TickPolicy | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.make_frame = make_frame
        """``(race_id, now_ms)`` → the race's frame now (None: race unknown)."""
        self.policy = policy or TickPolicy()
        self.clock_ms = clock_ms
        self.channels: dict[int, RaceChannel] = {}
        self.stats = FanoutStats()
        self._heartbeat: asyncio.Task[None] | None = None
        self.workers: Workers | None = None
        """Fan-out worker processes that also send each frame (``--fanout-workers``)."""

    def channel(self, race_id: int) -> RaceChannel:
        """The race's channel (created on first use)."""
        channel = self.channels.get(race_id)
        if channel is None:
            channel = self.channels[race_id] = RaceChannel(race_id)
        return channel

    @property
    def session_count(self) -> int:
        """WebTransport sessions across races."""
        return sum(len(c.sessions) for c in self.channels.values())

    @property
    def socket_count(self) -> int:
        """WebSocket clients across races."""
        return sum(len(c.sockets) for c in self.channels.values())

    def start(self) -> None:
        """Start the heartbeat (call from the event loop)."""
        self._heartbeat = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Stop ticking."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        for channel in self.channels.values():
            if channel.timer is not None:
                channel.timer.cancel()

    def join(self, race_id: int, session: WebTransportSession) -> None:
        """A spectator opened a session: the base on a stream, then the newest delta."""
        channel = self.channel(race_id)
        channel.sessions.add(session)
        session.state = race_id
        if channel.base is None:
            self.tick(race_id)
        else:
            session.send_on_stream(channel.base_bytes)
            if channel.last_bytes and channel.last_bytes is not channel.base_bytes:
                self._send_datagram(session, channel.last_bytes)
        self.stats.stream_frames += 1

    def leave(self, session: WebTransportSession) -> None:
        """A session ended."""
        channel = self.channels.get(session.state) if isinstance(session.state, int) else None
        if channel is not None:
            channel.sessions.discard(session)

    def resync(self, session: WebTransportSession) -> None:
        """The browser asked for a fresh base (it lost its own)."""
        channel = self.channels.get(session.state) if isinstance(session.state, int) else None
        if channel is not None and channel.base_bytes:
            session.send_on_stream(channel.base_bytes)
            self.stats.stream_frames += 1

    def subscribe_socket(self, race_id: int) -> SocketClient:
        """A WebSocket spectator: gets the newest snapshot at once, then each tick's."""
        client = SocketClient()
        channel = self.channel(race_id)
        channel.sockets.add(client)
        if channel.last_frame is None or channel.timer is not None:
            self.tick(race_id)  # first frame, or news waiting: a fresh one for everyone
        else:
            client.offer(encode_snapshot(channel.last_frame))
        return client

    def unsubscribe_socket(self, race_id: int, client: SocketClient) -> None:
        """A WebSocket spectator left."""
        self.channel(race_id).sockets.discard(client)

    def news(self, race_id: int, arrived_ms: float | None = None) -> None:
        """New positions or actions for a race: schedule its next frame.

        ``arrived_ms`` is when the news reached the relay (``time.monotonic()`` in ms).
        """
        channel = self.channel(race_id)
        now = time.monotonic() * 1000
        if len(channel.arrivals) < MAX_ARRIVALS:
            channel.arrivals.append(arrived_ms if arrived_ms is not None else now)
        channel.last_news_ms = now
        if channel.timer is None:
            channel.burst_started_ms = now
        else:
            channel.timer.cancel()
        due = self.frame_due(channel, now)
        loop = asyncio.get_running_loop()
        channel.timer = loop.call_later(max(0.0, due - now) / 1000, self.tick, race_id)

    def frame_due(self, channel: RaceChannel, now: float) -> float:
        """When the race's next frame goes, news having just come at ``now`` (ms).

        When the burst has ended (quiet for quiet_ms), but no later than the coalescing
        window after its first fix, and never sooner than min_interval_ms after the last
        frame; past the race's frame budget, once the oldest frame of it is an interval
        old.
        """
        policy = self.policy
        allowed = policy.frames_allowed(self.audience(channel))
        window = policy.coalesce_for(allowed)
        due = min(now + policy.quiet_ms, channel.burst_started_ms + window)
        due = max(due, channel.last_frame_ms + policy.min_interval_ms)
        recent = channel.recent_frames
        if len(recent) >= allowed:
            due = max(due, recent[-allowed] + policy.interval_ms)
        return due

    def audience(self, channel: RaceChannel) -> int:
        """WebTransport sessions watching the race, here and on the workers."""
        workers = self.workers.audience(channel.race_id) if self.workers is not None else 0
        return len(channel.sessions) + workers

    def heartbeat_due(self, channel: RaceChannel, now: float) -> bool:
        """Whether a watched race with no news pending needs a frame anyway (its ages)."""
        interval = self.policy.interval_ms
        return (
            bool(self.audience(channel) or channel.sockets)
            and channel.timer is None
            and now - channel.last_frame_ms >= interval
            and now - channel.last_news_ms >= interval  # else news drives the frames
        )

    def tick(self, race_id: int) -> None:
        """Produce the race's frame now and send it to everyone watching."""
        channel = self.channel(race_id)
        if channel.timer is not None:
            channel.timer.cancel()
            channel.timer = None
        channel.last_frame_ms = time.monotonic() * 1000
        channel.recent_frames.append(channel.last_frame_ms)
        frame = self.make_frame(race_id, self.clock_ms())
        if frame is None:
            return
        data = channel.encode(frame, self.policy.keyframe_every)
        self.stats.frames += 1
        if self.workers is not None:
            self.workers.publish(race_id, data)
        for session in [s for s in channel.sessions if not s.closed]:
            self._send_datagram(session, data)
        if channel.sockets:
            snapshot = data if peek_kind(data) is FrameKind.SNAPSHOT else encode_snapshot(frame)
            for client in channel.sockets:
                client.offer(snapshot)
                self.stats.socket_frames += 1
        for arrived in channel.arrivals:
            self.stats.record(channel.last_frame_ms - arrived)
        channel.arrivals.clear()

    def _send_datagram(self, session: WebTransportSession, data: bytes) -> None:
        if fits_datagram(data):
            session.send_datagram(data)
            self.stats.datagrams += 1
        else:
            session.send_on_stream(data)
            self.stats.stream_frames += 1

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval_ms / 4000)
            now = time.monotonic() * 1000
            for race_id, channel in list(self.channels.items()):
                if self.heartbeat_due(channel, now):
                    self.tick(race_id)
