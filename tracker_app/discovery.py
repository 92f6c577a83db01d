"""Find edge relays on the local network with zeroconf (DNS-SD over mDNS).

:func:`find_relays` answers "which relays serve my race?" once; :class:`RelayBrowser`
keeps a live view (the console shows it). Both browse ``_gruppetto._udp.local.`` on the
interface addresses given (``["127.0.0.1"]`` in tests and the demo; zeroconf's default of
every interface is never used), resolve each service and parse it with
:meth:`sync_protocol.discovery.RelayAdvert.from_properties`. A malformed advert is logged
and skipped. Where multicast does not reach (another subnet, a VPN, a phone hotspot that
filters it), configure the relay's URL instead: see docs/discovery.md.

Inside a running event loop zeroconf starts no thread; on Linux, ``127.0.0.1`` works for
multicast on loopback as is (see ``edge_relay.discovery``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeAlias

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sync_protocol.discovery import (
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    RelayAdvert,
    check_interfaces,
)
from sync_protocol.errors import DecodeError

__all__ = ["RESOLVE_TIMEOUT_MS", "RelayBrowser", "find_relays", "relay_order"]

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 3_000
"""How long one service's SRV/TXT/address lookup may take before it is given up."""

Relays: TypeAlias = Mapping[str, RelayAdvert]
"""Relays by service name (``NAME._gruppetto._udp.local.``)."""


def relay_order(advert: RelayAdvert) -> tuple[str, tuple[str, ...], int]:
    """Sort key giving a deterministic order: name, then addresses, then port."""
    return (advert.name, advert.addresses, advert.quic_port)


class RelayBrowser:
    """A live view of the relays advertised on the given interfaces.

    ``async with RelayBrowser(["127.0.0.1"]) as browser:`` then read :attr:`relays`
    or ``await browser.wait_until(predicate, timeout_s)``. Services that appear or change
    are resolved in the background; one that leaves (goodbye or expiry) is dropped.
    """

    def __init__(self, interfaces: Sequence[str]) -> None:
        self._interfaces = check_interfaces(interfaces)
        self._relays: dict[str, RelayAdvert] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None

    @property
    def relays(self) -> Relays:
        """Relays resolved so far, by service name (``NAME._gruppetto._udp.local.``)."""
        return self._relays

    async def start(self) -> None:
        """Open the sockets and start browsing."""
        if self._zeroconf is not None:
            raise RuntimeError("the relay browser is already started")
        try:
            self._zeroconf = AsyncZeroconf(interfaces=self._interfaces)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot multicast on {self._interfaces}: {exc.strerror} (not an address here?)",
            ) from exc
        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    async def close(self) -> None:
        """Stop browsing, cancel pending lookups and release the sockets."""
        browser, self._browser = self._browser, None
        zc, self._zeroconf = self._zeroconf, None
        if browser is not None:
            await browser.async_cancel()  # no more callbacks, so no new lookups
        tasks = list(self._resolving.values())
        self._resolving.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if zc is not None:
            await zc.async_close()

    async def wait_until(self, predicate: Callable[[Relays], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(relays)`` holds (True) or ``timeout_s`` passes (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate(self._relays):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return predicate(self._relays)
        return True

    async def __aenter__(self) -> RelayBrowser:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        # Called by zeroconf on the event loop, with keyword arguments.
        previous = self._resolving.pop(name, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            if self._relays.pop(name, None) is not None:
                self._changed.set()
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, name))
        self._resolving[name] = task

    async def _resolve(self, zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS)
            if not found:
                log.debug("relay %r did not answer its lookup", name)
                return
            advert = RelayAdvert.from_properties(
                name.removesuffix("." + SERVICE_TYPE),
                info.parsed_scoped_addresses(),
                info.port,
                info.properties,
            )
        except DecodeError as exc:
            log.warning("ignoring a malformed relay advert: %s", exc.message)
            if self._relays.pop(name, None) is not None:
                self._changed.set()
            return
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]
        self._relays[name] = advert
        self._changed.set()


async def find_relays(
    *, race_id: int | None, timeout_s: float, interfaces: Sequence[str]
) -> list[RelayAdvert]:
    """Relays advertised on ``interfaces`` that serve ``race_id`` (every relay if None).

    Returns as soon as at least one matches, or what matched (possibly nothing) once
    ``timeout_s`` has passed; in :func:`relay_order`. Relays that speak another protocol
    version are logged and left out.
    """

    def usable(relays: Iterable[RelayAdvert]) -> list[RelayAdvert]:
        return [a for a in relays if a.serves(race_id) and a.version == PROTOCOL_VERSION]

    async with RelayBrowser(interfaces) as browser:
        await browser.wait_until(lambda relays: bool(usable(relays.values())), timeout_s)
        found = list(browser.relays.values())
    for advert in sorted(found, key=relay_order):
        if advert.serves(race_id) and advert.version != PROTOCOL_VERSION:
            log.info(
                "relay %r speaks protocol version %d, this tracker %d: skipped",
                advert.name,
                advert.version,
                PROTOCOL_VERSION,
            )
    return sorted(usable(found), key=relay_order)
