"""A real Advertiser and a real browser, multicasting on loopback only (127.0.0.1).

Names and race ids include this process's id, so relays that other test runs on the
same machine advertise at the same time cannot be mistaken for these.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from edge_relay.discovery import Advertiser
from sync_protocol.discovery import PROTOCOL_VERSION, SERVICE_TYPE, RelayAdvert
from sync_protocol.errors import LocalProtocolError
from tracker_app.discovery import RelayBrowser, find_relays

LOOPBACK = ["127.0.0.1"]
WAIT_S = 15.0  # an upper bound on waiting for an event that comes within ~2 s here
PID = os.getpid()
RACE_A, RACE_B, RACE_NONE = PID * 10 + 1, PID * 10 + 2, PID * 10 + 3


def relay(tag: str, races: tuple[int, ...], cert: str = "ab" * 32) -> RelayAdvert:
    return RelayAdvert(
        name=f"gruppetto-test-{PID}-{tag}",
        addresses=("127.0.0.1",),
        quic_port=4433,
        http_port=8080,
        race_ids=races,
        cert_sha256=cert,
    )


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


def test_advertised_relay_is_found() -> None:
    advert = relay("found", (RACE_A,))

    async def scenario() -> None:
        async with Advertiser() as advertiser:
            await advertiser.start(advert, LOOPBACK)
            assert advertiser.advert == advert
            found = await find_relays(race_id=RACE_A, timeout_s=WAIT_S, interfaces=LOOPBACK)
            assert found == [advert]
            assert found[0].quic_url() == "https://127.0.0.1:4433"
            anything = await find_relays(race_id=None, timeout_s=WAIT_S, interfaces=LOOPBACK)
            assert anything  # ours at least, whoever else is on the link
            assert anything == sorted(anything, key=lambda a: (a.name, a.addresses, a.quic_port))

    asyncio.run(scenario())


def test_update_is_seen_and_close_unregisters() -> None:
    first = relay("update", (RACE_A,))
    rotated = relay("update", (RACE_A, RACE_B), cert="cd" * 32)
    key = f"{first.name}.{SERVICE_TYPE}"

    async def scenario() -> None:
        advertiser = Advertiser()
        async with RelayBrowser(LOOPBACK) as browser:
            try:
                await advertiser.start(first, LOOPBACK)
                assert await browser.wait_until(lambda r: r.get(key) == first, WAIT_S)

                await advertiser.update(rotated)
                assert advertiser.advert == rotated
                assert await browser.wait_until(lambda r: r.get(key) == rotated, WAIT_S)
                found = await find_relays(race_id=RACE_B, timeout_s=WAIT_S, interfaces=LOOPBACK)
                assert found == [rotated]
            finally:
                await advertiser.close()
            # The goodbye removes it from browsers at once (no waiting for a TTL).
            assert await browser.wait_until(lambda r: key not in r, WAIT_S)
        await advertiser.close()  # closing twice is harmless
        with pytest.raises(RuntimeError, match="not started"):
            await advertiser.update(rotated)

    asyncio.run(scenario())


def test_race_filter() -> None:
    a = relay("filter-a", (RACE_A,))
    b = relay("filter-b", (RACE_B,))

    async def scenario() -> None:
        async with Advertiser() as first, Advertiser() as second:
            await asyncio.gather(first.start(a, LOOPBACK), second.start(b, LOOPBACK))
            assert await find_relays(race_id=RACE_B, timeout_s=WAIT_S, interfaces=LOOPBACK) == [b]
            assert await find_relays(race_id=RACE_A, timeout_s=WAIT_S, interfaces=LOOPBACK) == [a]
            async with RelayBrowser(LOOPBACK) as browser:
                ours = {f"{x.name}.{SERVICE_TYPE}": x for x in (a, b)}
                assert await browser.wait_until(
                    lambda r: all(r.get(k) == v for k, v in ours.items()), WAIT_S
                )

    asyncio.run(scenario())


def test_nothing_found_when_no_relay_of_this_version_serves_the_race() -> None:
    other_race = relay("other-race", (RACE_A,))
    newer = replace(relay("newer", (RACE_NONE,)), version=PROTOCOL_VERSION + 1)

    async def scenario() -> None:
        async with Advertiser() as first, Advertiser() as second:
            await asyncio.gather(first.start(other_race, LOOPBACK), second.start(newer, LOOPBACK))
            async with RelayBrowser(LOOPBACK) as browser:
                key = f"{newer.name}.{SERVICE_TYPE}"
                assert await browser.wait_until(lambda r: r.get(key) == newer, WAIT_S)
            # Bounded by the timeout: the wait for an answer that does not come.
            assert await find_relays(race_id=RACE_NONE, timeout_s=2.0, interfaces=LOOPBACK) == []

    asyncio.run(scenario())


class WarningSeen(logging.Handler):
    """Sets an asyncio event when a warning mentioning ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_malformed_advert_is_skipped_and_logged() -> None:
    good = relay("good", (RACE_A,))
    bad_name = f"gruppetto-test-{PID}-bad"

    async def scenario() -> None:
        logger = logging.getLogger("tracker_app.discovery")
        handler = WarningSeen(bad_name)
        logger.addHandler(handler)
        bad = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{bad_name}.{SERVICE_TYPE}",
            port=4433,
            properties={"v": "1", "http": "not-a-port", "races": str(RACE_A)},
            server=f"{bad_name}.local.",
            parsed_addresses=["127.0.0.1"],
        )
        raw = AsyncZeroconf(interfaces=LOOPBACK)
        try:
            async with Advertiser() as advertiser, RelayBrowser(LOOPBACK) as browser:
                registering = raw.async_register_service(bad)
                _, announced = await asyncio.gather(advertiser.start(good, LOOPBACK), registering)
                await announced
                await asyncio.wait_for(handler.seen.wait(), WAIT_S)
                key = f"{good.name}.{SERVICE_TYPE}"
                assert await browser.wait_until(lambda r: key in r, WAIT_S)
                assert f"{bad_name}.{SERVICE_TYPE}" not in browser.relays
                found = await find_relays(race_id=RACE_A, timeout_s=WAIT_S, interfaces=LOOPBACK)
                assert found == [good]
        finally:
            logger.removeHandler(handler)
            await raw.async_close()

    asyncio.run(scenario())


def test_same_name_gets_a_suffix() -> None:
    """A relay that finds its name taken advertises as NAME-2 and says so.

    The relay already there is a zeroconf responder that serves the records without
    announcing them: like a relay that has been up for a while, it may multicast them
    again at once (a responder waits a second between two multicasts of a record, and the
    newcomer's unicast-answered probes can miss it on one host: see edge_relay.discovery).
    """
    advert = relay("twin", (RACE_A,))

    async def scenario() -> None:
        other = AsyncZeroconf(interfaces=LOOPBACK)
        try:
            await other.zeroconf.async_wait_for_start()
            other.zeroconf.registry.async_add(
                AsyncServiceInfo(
                    SERVICE_TYPE,
                    f"{advert.name}.{SERVICE_TYPE}",
                    port=advert.quic_port,
                    properties=advert.to_properties(),
                    server=f"other-{PID}.local.",
                    parsed_addresses=["127.0.0.1"],
                )
            )
            async with Advertiser() as second:
                await second.start(advert, LOOPBACK)
                assert second.advert.name == f"{advert.name}-2"
                assert second.advert.race_ids == advert.race_ids
                async with RelayBrowser(LOOPBACK) as browser:
                    key = f"{second.advert.name}.{SERVICE_TYPE}"
                    assert await browser.wait_until(lambda r: r.get(key) == second.advert, WAIT_S)
        finally:
            await other.async_close()

    asyncio.run(scenario())


def test_interfaces_must_be_named() -> None:
    async def scenario() -> None:
        with pytest.raises(LocalProtocolError, match="non-empty list"):
            await Advertiser().start(relay("none", ()), [])
        with pytest.raises(LocalProtocolError, match="not an IP address"):
            RelayBrowser(["eth0"])
        with pytest.raises(LocalProtocolError, match="non-empty list"):
            await find_relays(race_id=None, timeout_s=1.0, interfaces=[])

    asyncio.run(scenario())
