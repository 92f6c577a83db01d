"""Advertise the relay on the local network with zeroconf (DNS-SD over mDNS).

One service of type ``_gruppetto._udp.local.`` per relay; the record layout is
:mod:`sync_protocol.discovery`. Trackers and the console find it with
``tracker_app.discovery.find_relays``.

Interfaces are always explicit: the relay passes the addresses from its settings, tests
and the demo pass ``["127.0.0.1"]``. zeroconf's default multicasts on every interface,
which a relay on a shared network must choose to do, not fall into.

Measured on Linux with zeroconf 0.154: multicast on loopback works with
``interfaces=["127.0.0.1"]`` as is, although ``lo`` has no MULTICAST flag: zeroconf binds
its responder socket to 127.0.0.1 and sets ``IP_MULTICAST_IF`` to it, and picks
``IPVersion.V4Only`` from a list of IPv4 addresses by itself. ``::1`` does not work
(zeroconf says so too): advertise on an IPv4 address, the advert may still list IPv6
addresses. Registering takes about 1.7 s (three probes for name conflicts, then the
announcements); an update or the goodbye on close about 0.3-0.5 s. Inside a running event
loop zeroconf starts no thread of its own.

Name conflicts: zeroconf renames a relay whose name is taken to ``NAME-2`` only when it
has the other relay's PTR record in its cache. The other relay's unicast answer to a probe
may land on another socket on the same host (every responder binds UDP 5353 with
SO_REUSEPORT), so :class:`Advertiser` browses with multicast questions while it probes.
A responder multicasts a record at most once a second, so a relay that announced less than
a second ago still goes unseen on the same host: give each relay its own name.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType

from zeroconf import DNSQuestionType
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sync_protocol.discovery import SERVICE_TYPE, RelayAdvert, check_interfaces

__all__ = ["Advertiser"]

log = logging.getLogger(__name__)


class Advertiser:
    """Keeps one relay advert registered until :meth:`close`.

    ``await start(advert, interfaces)`` probes for the name and announces it; if another
    relay already uses the name, zeroconf picks ``NAME-2`` and :attr:`advert` says so.
    ``await update(advert)`` re-announces after the races or the certificate change;
    ``await close()`` sends the goodbye and releases the sockets. Also an async context
    manager (closing on exit).
    """

    def __init__(self) -> None:
        self._zeroconf: AsyncZeroconf | None = None
        self._advert: RelayAdvert | None = None
        self._server = ""

    @property
    def advert(self) -> RelayAdvert:
        """What is advertised now, under the name actually registered."""
        if self._advert is None:
            raise RuntimeError("the advertiser is not started")
        return self._advert

    async def start(self, advert: RelayAdvert, interfaces: Sequence[str]) -> None:
        """Register ``advert`` on the given interface addresses and announce it."""
        if self._zeroconf is not None:
            raise RuntimeError("the advertiser is already started")
        listen_on = check_interfaces(interfaces)
        try:
            zc = AsyncZeroconf(interfaces=listen_on)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot multicast on {listen_on}: {exc.strerror} (not an address here?)"
            ) from exc
        self._zeroconf = zc
        # The host name only has to be unique per relay on the link; clients use the
        # addresses. It stays the same through updates, even after a rename.
        digest = hashlib.sha256(advert.name.encode()).hexdigest()[:12]
        self._server = f"gruppetto-relay-{digest}.local."
        info = _service_info(advert, self._server)
        # zeroconf sees a name conflict only as a PTR record in its cache, and the owner's
        # answer to a probe is unicast, which on one host may land on another process's
        # socket (every responder binds 5353 with SO_REUSEPORT). Browsing with multicast
        # (QM) questions while probing puts the other relays' PTR records in the cache.
        browser = AsyncServiceBrowser(
            zc.zeroconf, SERVICE_TYPE, handlers=[_ignore], question_type=DNSQuestionType.QM
        )
        try:
            try:
                announced = await zc.async_register_service(info, allow_name_change=True)
                await announced
            finally:
                await browser.async_cancel()
            registered = info.name.removesuffix("." + SERVICE_TYPE)
            self._advert = replace(advert, name=registered)
        except BaseException:
            await self.close()
            raise
        if registered != advert.name:
            log.warning(
                "another relay on the network is called %r; advertising as %r",
                advert.name,
                registered,
            )
        log.info(
            "advertising relay %r on %s: %s, page %s, races %s, certificate sha256 %s",
            registered,
            ", ".join(listen_on),
            self._advert.quic_url(),
            self._advert.page_url(),
            list(advert.race_ids),
            advert.cert_sha256 or "(CA-signed)",
        )

    async def update(self, advert: RelayAdvert) -> None:
        """Re-announce with new races, ports, addresses or certificate hash.

        The name stays the one registered (``advert.name`` is ignored): a new name is a
        new service, so close and start again for that.
        """
        if self._zeroconf is None or self._advert is None:
            raise RuntimeError("the advertiser is not started")
        advert = replace(advert, name=self._advert.name)
        if advert == self._advert:
            return
        announced = await self._zeroconf.async_update_service(_service_info(advert, self._server))
        await announced
        self._advert = advert
        log.info(
            "relay %r now advertises races %s, certificate sha256 %s",
            advert.name,
            list(advert.race_ids),
            advert.cert_sha256 or "(CA-signed)",
        )

    async def close(self) -> None:
        """Send the goodbye (the service disappears from browsers) and free the sockets."""
        zc, self._zeroconf = self._zeroconf, None
        self._advert = None
        if zc is not None:
            await zc.async_close()

    async def __aenter__(self) -> Advertiser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _ignore(**_: object) -> None:
    """Browser handler for :meth:`Advertiser.start`: only the cache it fills matters."""


def _service_info(advert: RelayAdvert, server: str) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{advert.name}.{SERVICE_TYPE}",
        port=advert.quic_port,
        properties=advert.to_properties(),
        server=server,
        parsed_addresses=list(advert.addresses),
    )
