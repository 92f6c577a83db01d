"""The fan-out's pieces with no sockets: latest-wins mailboxes and keyframe bases."""

from __future__ import annotations

import asyncio

from edge_relay.fanout import Fanout, RaceChannel, SocketClient, TickPolicy
from sync_protocol.frames import (
    FrameKind,
    LiveFrame,
    RaceStatus,
    RiderState,
    RiderStatus,
    decode_frame,
    peek_kind,
)


def frame(tick: int, progress: int) -> LiveFrame:
    riders = tuple(
        RiderState(
            bib=b,
            status=RiderStatus.RACING,
            lat_e7=450_000_000 + b,
            lon_e7=60_000_000,
            progress_m=progress - 10 * b,
            speed_cms=1_000,
            gap_ds=b,
            fix_age_s=0,
            group=0,
        )
        for b in range(1, 6)
    )
    return LiveFrame(
        race_id=7, tick=tick, t_ms=1_780_000_000_000 + tick * 1000, race_status=RaceStatus.LIVE,
        riders=riders,
    )  # fmt: skip


def test_a_client_that_never_reads_holds_one_frame() -> None:
    client = SocketClient()
    for i in range(10_000):
        client.offer(bytes([i % 256]) * 500)
    assert client.pending == bytes([9_999 % 256]) * 500
    assert client.replaced == 9_999
    assert asyncio.run(client.next_frame()) == client_last(9_999)
    assert client.pending is None


def client_last(i: int) -> bytes:
    return bytes([i % 256]) * 500


def test_deltas_decode_against_the_last_snapshot_even_after_losses() -> None:
    channel = RaceChannel(7)
    sent = [channel.encode(frame(t, 1_000 + 10 * t), keyframe_every=5) for t in range(12)]
    kinds = [peek_kind(d) for d in sent]
    assert kinds[0] is FrameKind.SNAPSHOT
    assert kinds[5] is FrameKind.SNAPSHOT
    assert kinds[1:5] == [FrameKind.DELTA] * 4
    base = decode_frame(sent[0])
    # lose frames 1..3: frame 4 still decodes against the base
    assert decode_frame(sent[4], base).riders[0].progress_m == 1_040 - 10


# -- when frames go out (the decisions, on synthetic times) ---------------------------


def fanout(**policy: int) -> Fanout:
    return Fanout(lambda race_id, now_ms: None, TickPolicy(**policy))


def test_a_burst_goes_out_when_it_ends_or_after_the_coalescing_window() -> None:
    f, channel = fanout(), RaceChannel(7)
    channel.last_frame_ms, channel.burst_started_ms = 0.0, 10_000.0
    assert f.frame_due(channel, 10_005.0) == 10_005.0 + f.policy.quiet_ms  # quiet end
    # news still coming 70 ms in: the window's end wins
    assert f.frame_due(channel, 10_070.0) == 10_000.0 + f.policy.coalesce_ms


def test_stragglers_get_their_own_frame_soon_while_the_audience_is_small() -> None:
    f, channel = fanout(), RaceChannel(7)
    channel.recent_frames.extend([10_050.0])
    channel.last_frame_ms = 10_050.0
    channel.burst_started_ms = 10_060.0  # a straggler right after the burst's frame
    # the burst's end, but not sooner than min_interval_ms after the last frame
    assert f.frame_due(channel, 10_060.0) == 10_050.0 + f.policy.min_interval_ms
    # and still no more than max_frames_per_interval in an interval
    budget = f.policy.max_frames_per_interval
    channel.recent_frames.extend(10_060.0 + 40 * i for i in range(budget - 1))
    channel.last_frame_ms = channel.recent_frames[-1]
    assert f.frame_due(channel, channel.last_frame_ms + 10) == 10_050.0 + f.policy.interval_ms


def test_a_large_audience_gets_one_frame_per_interval() -> None:
    policy = TickPolicy()
    assert policy.frames_allowed(20) == policy.max_frames_per_interval
    assert policy.frames_allowed(1_000) == 2
    assert policy.frames_allowed(5_000) == 1
    assert policy.frames_allowed(0) == policy.max_frames_per_interval
    f, channel = Fanout(lambda race_id, now_ms: None, policy), RaceChannel(7)
    channel.sessions = {object() for _ in range(5_000)}  # type: ignore[misc]
    channel.recent_frames.extend([10_050.0])
    channel.last_frame_ms = channel.burst_started_ms = 10_050.0
    # the straggler waits for the next interval: 5,000 datagrams per frame
    assert f.frame_due(channel, 10_060.0) == 10_050.0 + policy.interval_ms


def test_the_coalescing_window_stretches_as_the_frame_budget_shrinks() -> None:
    policy = TickPolicy(coalesce_ms=30, max_frames_per_interval=8, max_coalesce_ms=250)
    assert policy.coalesce_for(8) == 30  # a small audience: a long burst in several frames
    assert policy.coalesce_for(4) == 60
    assert policy.coalesce_for(2) == 120
    assert policy.coalesce_for(1) == 240  # one frame a second: the burst whole in it
    assert TickPolicy(max_coalesce_ms=100).coalesce_for(1) == 100
    f, channel = Fanout(lambda race_id, now_ms: None, policy), RaceChannel(7)
    channel.sessions = {object() for _ in range(5_000)}  # type: ignore[misc]
    channel.burst_started_ms = 10_000.0
    # fixes still arriving 100 ms into the burst: the frame waits for its end
    assert f.frame_due(channel, 10_100.0) == 10_100.0 + policy.quiet_ms
    assert f.frame_due(channel, 10_235.0) == 10_000.0 + 240


def test_the_heartbeat_never_fires_while_news_keeps_coming() -> None:
    f, channel = fanout(), RaceChannel(7)
    channel.sockets.add(SocketClient())
    channel.last_frame_ms, channel.last_news_ms = 10_000.0, 10_000.0
    assert not f.heartbeat_due(channel, 10_500.0)  # too soon
    # a second on, the next burst is due any moment: no frame to spend its budget
    channel.last_news_ms = 10_990.0
    assert not f.heartbeat_due(channel, 11_010.0)
    # no news for a whole interval: fix ages must keep counting
    channel.last_news_ms = 10_000.0
    assert f.heartbeat_due(channel, 11_010.0)
    assert not fanout().heartbeat_due(RaceChannel(8), 99_999.0)  # nobody watching
