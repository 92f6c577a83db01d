"""The status line, the order of hops, backoff and ``--relay`` parsing (no sockets)."""

from __future__ import annotations

import random

import pytest

from sync_protocol.discovery import RelayAdvert
from tracker_app.errors import TrackerError
from tracker_app.h3client import Endpoint, Radio
from tracker_app.hops import Backoff, Hop, HopList, Link
from tracker_app.status import Status, render
from tracker_app.tracker import relay_hop

NOW = 1_782_900_000_000


def status(**changes: object) -> Status:
    base: dict[str, object] = {
        "gps": "3d",
        "satellites": 9,
        "hacc_m": 3.2,
        "recorded": 3_721,
        "waiting": 0,
        "acked_seq": 3_721,
        "last_ack_ms": NOW - 2_000,
        "link": "relay",
        "hop": "Col du Galibier",
        "coverage": True,
        "wakeups": 3,
    }
    return Status(**{**base, **changes})  # type: ignore[arg-type]


def test_the_status_line_says_what_a_racer_needs_at_a_glance() -> None:
    assert render(status(), NOW) == (
        "GPS 3d 9 sats ±3 m | recorded 3,721 | waiting 0 | acked 3,721 (2 s ago) | "
        "link relay Col du Galibier | radio 3 wake-ups"
    )


def test_the_status_line_offline_and_warnings() -> None:
    line = render(
        status(
            gps="no-fix",
            satellites=None,
            hacc_m=None,
            waiting=1_200,
            acked_seq=2_521,
            last_ack_ms=NOW - 1_260_000,
            link="offline",
            hop="",
            coverage=False,
            wakeups=1,
            warning="storage 85% of budget",
        ),
        NOW,
    )
    assert line == (
        "GPS no-fix | recorded 3,721 | waiting 1,200 | acked 2,521 (21 min ago) | "
        "link offline (no coverage) | radio 1 wake-up | storage 85% of budget"
    )


def test_relays_come_first_then_discovered_ones_then_the_cloud() -> None:
    cloud = Hop(Link.CLOUD, "cloud", Endpoint("10.0.0.1", 443))
    mine = Hop(Link.RELAY, "mine", Endpoint("10.0.0.2", 4433))
    adverts = [
        RelayAdvert("other race", ("10.0.0.3",), 4433, 8080, race_ids=(9,)),
        RelayAdvert("summit", ("10.0.0.4",), 4433, 8080, race_ids=(7,), cert_sha256="ab" * 32),
        RelayAdvert("same as mine", ("10.0.0.2",), 4433, 8080, race_ids=(7,)),
    ]
    hops = HopList(relays=[mine], cloud=cloud, adverts=lambda: adverts, race_id=7).hops()
    assert [h.name for h in hops] == ["mine", "summit", "cloud"]
    assert hops[1].endpoint.pin_sha256 == bytes.fromhex("ab" * 32)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff, rng = Backoff(base_s=1.0, max_s=60.0), random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert all(30.0 <= d <= 60.0 for d in delays[7:])


def test_radio_counts_a_wake_up_only_after_a_silence() -> None:
    now = [0.0]
    radio = Radio(tail_s=5.0, clock=lambda: now[0])
    for t in (0.0, 1.0, 2.0, 2.5, 9.0, 9.1, 20.0):
        now[0] = t
        radio.sent(100)
    assert radio.wakeups == 3
    assert radio.bytes_sent == 700


def test_relay_urls_and_pins_are_checked() -> None:
    hop = relay_hop("https://192.0.2.7:4433", "AB" * 32)
    assert hop.endpoint == Endpoint("192.0.2.7", 4433, pin_sha256=bytes.fromhex("ab" * 32))
    with pytest.raises(TrackerError, match="https://HOST:PORT"):
        relay_hop("http://192.0.2.7", None)
    with pytest.raises(TrackerError, match="64 hex digits"):
        relay_hop("https://192.0.2.7:4433", "abc")
