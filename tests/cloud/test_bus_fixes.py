"""Every accepted fix on the live bus: ``fixes`` rows then the newest ``fix``, once each.

A real cloud on loopback: a catch-up upload after a gap reaches a stream subscriber as
every fix, in order, in a handful of messages, while the snapshot keeps each rider's
newest fix only; a backfill older than the rider's newest goes out as ``fixes`` alone.
The officials' console, fed that stream, times a checkpoint passage that only the
backfilled fixes show. And the in-process bus on its own: a catch-up of 50,000 fixes is
a few queue entries, while a subscriber that falls ``QUEUE_LIMIT`` messages behind is
still dropped with ``resync``.
"""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path
from typing import Any

from cloud.bus import FIX_FIELDS, FIXES_PER_MESSAGE, QUEUE_LIMIT, InProcessBus, fixes_message
from console_tui.client import CloudClient
from console_tui.feed import CloudFeed
from tests.cloud.conftest import CloudServer
from tests.cloud.live import follow, next_of
from tests.cloud.riders import Rider, now_ms, post, setup_race

SPRINT_M = 1000.0
"""The sprint line: riders ride 10 m a fix, so they cross it between fixes 99 and 100."""


def fixes_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``fix`` or ``fixes`` message as fix records."""
    if message["type"] == "fix":
        return [message]
    assert message["fields"] == list(FIX_FIELDS)
    return [dict(zip(message["fields"], row, strict=True)) for row in message["fixes"]]


def read_until(lines: queue.Queue[Any], rider: int, seq: int) -> list[dict[str, Any]]:
    """Stream messages up to the one holding ``rider``'s fix ``seq``."""
    out = []
    while True:
        message = lines.get(timeout=10)
        out.append(message)
        if message.get("rider_id") == rider and any(f["seq"] == seq for f in fixes_of(message)):
            return out


def seqs(messages: list[dict[str, Any]], rider: int) -> list[int]:
    return [
        f["seq"]
        for m in messages
        if m["type"] in ("fix", "fixes") and m["rider_id"] == rider
        for f in fixes_of(m)
    ]


def test_catch_up_and_backfill_reach_the_stream_as_every_fix_once(
    cloud_server: CloudServer, tmp_path: Path
) -> None:
    server = cloud_server
    admin, race_id, credential = setup_race(server, tmp_path, starts_at=now_ms() - 10_000)
    sprint = {"name": "Sprint", "kind": "sprint", "distance_m": SPRINT_M}
    response = admin.put(f"/api/races/{race_id}/checkpoints", json={"checkpoints": [sprint]})
    assert response.status_code == 200, response.text
    catching_up = Rider(server, admin, race_id, count=480)
    backfilled = Rider(server, admin, race_id, count=400)
    assert admin.post(f"/api/races/{race_id}/state", json={"state": "live"}).status_code == 200
    messages: list[dict[str, Any]] = []
    with follow(server, credential, race_id) as lines:
        messages.append(next_of(lines, "snapshot"))
        post(server, credential, catching_up.batch(1, 5), backfilled.batch(1, 5))
        messages += read_until(lines, backfilled.id, 5)
        # An hour's gap is a few minutes here: the tracker catches up in one upload.
        catch_up = [
            catching_up.batch(s, min(s + 59, 480), prev_hash=True) for s in range(6, 481, 60)
        ]
        assert {r["outcome"] for r in post(server, credential, *catch_up)} == {"accepted"}
        caught_up = read_until(lines, catching_up.id, 480)
        messages += caught_up
        assert [m["type"] for m in caught_up if m.get("rider_id") == catching_up.id] == [
            "fixes",
            "fix",
        ]  # one upload, one rider: its history in one message, then its newest
        assert seqs(caught_up, catching_up.id) == list(range(6, 481))

        # The other tracker sent its newest fix first, then the ones it missed.
        post(server, credential, backfilled.batch(400, 400, prev_hash=True))
        newest = read_until(lines, backfilled.id, 400)
        assert [m["type"] for m in newest] == ["fix"]
        post(server, credential, backfilled.batch(6, 399, prev_hash=True))
        backfill = read_until(lines, backfilled.id, 399)
        assert [m["type"] for m in backfill] == ["fixes"]  # history: no new newest
        assert seqs(backfill, backfilled.id) == list(range(6, 400))
        messages += newest + backfill
        assert lines.empty()
    assert seqs(messages, catching_up.id) == list(range(1, 481))  # in order, once
    assert seqs(messages, backfilled.id) == [*range(1, 6), 400, *range(6, 400)]
    one = next(m for m in messages if m["type"] == "fixes" and m["rider_id"] == catching_up.id)
    assert (one["via"] != 0, one["bib"]) == (True, 1)
    assert one["device_id"] == catching_up.device.hex()

    with follow(server, credential, race_id) as lines:
        snapshot = lines.get(timeout=10)
    riders = [(r["type"], r["rider_id"], r["seq"]) for r in snapshot["riders"]]
    assert riders == [("fix", catching_up.id, 480), ("fix", backfilled.id, 400)]

    # The console scores the stream as the relay does: both sprints are in backfill only.
    race = admin.get(f"/api/races/{race_id}").json()
    start_list = admin.get(f"/api/races/{race_id}/riders").json()

    async def console() -> CloudFeed:
        return CloudFeed(CloudClient("http://127.0.0.1:9"), race, start_list)

    feed = asyncio.run(console())
    for message in messages:
        feed.apply(message)
    crossings = {a.rider_id: a.t_ms for a in feed.scorer.arrivals("Sprint")}
    assert crossings.keys() == {catching_up.id, backfilled.id}
    for rider in (catching_up, backfilled):
        exact = rider.fixes[0].t_ms + round((SPRINT_M / 10.0 - 1) * 1000)
        assert abs(crossings[rider.id] - exact) <= 500


def row(seq: int) -> list[Any]:
    return [seq, 1_000_000 + seq * 1000, 450_000_000 + seq, 60_000_000, 0, 1000, 0, seq * 10.0]


def test_a_long_catch_up_is_a_few_queue_entries_and_the_queue_limit_holds() -> None:
    header = {"race_id": 1, "rider_id": 7, "bib": 12, "device_id": "ab" * 16, "via": 3}

    async def scenario() -> None:
        bus = InProcessBus()
        reader = bus.subscribe(1)
        assert (await anext(reader))["type"] == "snapshot"
        slow = bus.subscribe(1)
        assert (await anext(slow))["type"] == "snapshot"
        bus.publish(1, fixes_message(header, [row(s) for s in range(1, 50_001)]))
        got = [await anext(reader) for _ in range(51)]
        assert [m["type"] for m in got] == ["fixes"] * 50 + ["fix"]  # 49,999 rows, the newest
        assert all(len(m["fixes"]) <= FIXES_PER_MESSAGE for m in got[:-1])
        assert seqs(got, 7) == list(range(1, 50_001))
        assert bus.snapshot(1)["riders"][0]["seq"] == 50_000
        assert bus.subscriber_count(1) == 2  # the slow one is 51 entries behind, not 50,000

        # Backfill, and a replayed newest fix: history for subscribers, not the snapshot.
        bus.publish(1, fixes_message(header, [row(0)]))
        bus.publish(1, {"type": "fix", **header, **dict(zip(FIX_FIELDS, row(50_000), strict=True))})
        got = [await anext(reader) for _ in range(2)]
        assert [(m["type"], seqs([m], 7)) for m in got] == [("fixes", [0]), ("fixes", [50_000])]
        assert bus.snapshot(1)["riders"][0]["seq"] == 50_000

        for s in range(50_001, 50_001 + QUEUE_LIMIT):  # live fixes the slow one never reads
            bus.publish(1, fixes_message(header, [row(s)]))
        for _ in range(3):
            await asyncio.sleep(0)  # the deliveries run
        assert bus.subscriber_count(1) == 1  # the slow one was dropped...
        left = [m async for m in slow]
        assert len(left) == QUEUE_LIMIT + 1
        assert left[-1] == {"type": "resync", "reason": "subscriber too slow"}  # ...told so
        got = [await anext(reader) for _ in range(QUEUE_LIMIT)]  # the reader kept up
        assert seqs(got, 7) == list(range(50_001, 50_001 + QUEUE_LIMIT))
        await reader.aclose()

    asyncio.run(scenario())
