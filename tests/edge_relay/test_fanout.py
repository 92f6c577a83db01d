"""The fan-out's pieces with no sockets: latest-wins mailboxes and keyframe bases."""

from __future__ import annotations

import asyncio

from edge_relay.fanout import RaceChannel, SocketClient
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
