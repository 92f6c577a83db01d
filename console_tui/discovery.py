"""Find event relays on the local network with zeroconf (DNS-SD over mDNS).

Browses ``_gruppetto._udp.local.`` on the interface addresses given (never zeroconf's
default of every interface), resolves each service and parses it with
:meth:`sync_protocol.discovery.RelayAdvert.from_properties`; a malformed advert is logged
and skipped. The console talks to a relay's TCP side (``/api/info``, standings, alerts,
race control), so what it needs of an advert is :meth:`RelayAdvert.page_url`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sync_protocol.discovery import (
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    RelayAdvert,
    check_interfaces,
)
from sync_protocol.errors import DecodeError, LocalProtocolError

__all__ = ["find_relays", "relay_url"]

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 3_000
"""How long one service's lookup may take."""


def relay_url(advert: RelayAdvert) -> str:
    """The relay's TCP base URL (``http://HOST:PORT``, no trailing slash)."""
    return advert.page_url().rstrip("/")


async def find_relays(interfaces: Sequence[str], timeout_s: float) -> list[RelayAdvert]:
    """Relays advertised on ``interfaces`` that speak this protocol version.

    Returns as soon as one is resolved (then waits a moment for others that answer in the
    same burst), or what was found once ``timeout_s`` passes; sorted by name. Raises
    ``ValueError`` for a bad interface list and ``OSError`` when multicast is impossible.
    """
    try:
        addresses = check_interfaces(interfaces)
    except LocalProtocolError as exc:
        raise ValueError(exc.message) from None
    found: dict[str, RelayAdvert] = {}
    pending: set[asyncio.Task[None]] = set()
    changed = asyncio.Event()

    async def resolve(zc: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS):
            return
        try:
            advert = RelayAdvert.from_properties(
                name.removesuffix("." + SERVICE_TYPE),
                info.parsed_scoped_addresses(),
                info.port,
                info.properties,
            )
        except DecodeError as exc:
            log.warning("ignoring a malformed relay advert: %s", exc.message)
            return
        if advert.version != PROTOCOL_VERSION:
            log.info("relay %r speaks protocol version %d: skipped", advert.name, advert.version)
            return
        found[name] = advert
        changed.set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            found.pop(name, None)
            return
        task = asyncio.get_running_loop().create_task(resolve(zeroconf, name))
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        zc = AsyncZeroconf(interfaces=addresses)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot multicast on {addresses}: {exc.strerror}") from exc
    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await changed.wait()
            await asyncio.sleep(0.3)  # others answering the same query
        except TimeoutError:
            pass
    finally:
        await browser.async_cancel()
        for task in list(pending):
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await zc.async_close()
    return sorted(found.values(), key=lambda a: (a.name, a.addresses))
