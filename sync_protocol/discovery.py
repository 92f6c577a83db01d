"""What an edge relay advertises on the local network (DNS-SD over mDNS), sans-IO.

A relay registers one service of type :data:`SERVICE_TYPE`. The service's SRV record
carries the relay's QUIC port (UDP: HTTP/3 uploads and WebTransport) and its A/AAAA
records the addresses; the TXT record carries the rest as short ``key=value`` strings:

=========  ==========================================================  ==============
key        value                                                       example
=========  ==========================================================  ==============
``v``      sync protocol version the relay speaks (decimal)            ``1``
``http``   TCP port of the spectator page, WebSocket and health        ``8080``
``races``  race ids served, sorted, runs of three or more as ``a-b``   ``3,7-12,40``
``cert``   SHA-256 of the relay certificate's DER, lowercase hex;      ``9f86...``
           absent for a CA-signed certificate
=========  ==========================================================  ==============

Each TXT string (``key=value``) must fit in 255 bytes, so a relay can list only as many
races as fit there (and at most :data:`MAX_RACES`). Unknown keys are ignored so newer
relays can add some. This module only turns an advert into TXT properties and back; the
zeroconf I/O lives in ``edge_relay.discovery`` (advertising) and ``tracker_app.discovery``
(browsing).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .batch import VERSION as PROTOCOL_VERSION
from .errors import DecodeError, LimitExceeded, LocalProtocolError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_RACES",
    "MAX_TXT_STRING",
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "RelayAdvert",
    "check_interfaces",
    "decode_race_ids",
    "encode_race_ids",
    "url_host",
]

SERVICE_TYPE = "_gruppetto._udp.local."
MAX_TXT_STRING = 255
"""Longest ``key=value`` string a TXT record can hold (one length byte)."""
MAX_NAME_BYTES = 63
"""Longest service instance name, in UTF-8 bytes (RFC 6763, section 4.1.1)."""
MAX_RACES = 256
"""Most race ids one advert may list (also bounds the work of decoding ``a-b`` runs)."""
MAX_RACE_ID = 2**63 - 1

_KEY_VERSION = "v"
_KEY_HTTP = "http"
_KEY_RACES = "races"
_KEY_CERT = "cert"
_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class RelayAdvert:
    """One relay as seen on the network: where to reach it and what it serves.

    Constructing one validates every field and raises :class:`LocalProtocolError` on a bad
    one; :meth:`from_properties` turns the same checks on received data into
    :class:`DecodeError`.
    """

    name: str
    """Service instance name, a label people read (``"Galibier summit"``), 1..63 bytes."""
    addresses: tuple[str, ...]
    """The relay's IP addresses in text form, normalised, at least one."""
    quic_port: int
    """UDP port of HTTP/3 (uploads) and WebTransport (live frames); the SRV port."""
    http_port: int
    """TCP port of the spectator page, the WebSocket fallback and the health endpoint."""
    race_ids: tuple[int, ...] = ()
    """Races the relay serves, sorted and unique (empty: none yet)."""
    cert_sha256: str = ""
    """SHA-256 of the certificate's DER as 64 lowercase hex digits, for WebTransport's
    ``serverCertificateHashes``; empty when the relay has a CA-signed certificate."""
    version: int = PROTOCOL_VERSION
    """The sync protocol version the relay speaks."""

    def __post_init__(self) -> None:
        try:
            raw_name = self.name.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"relay name {self.name!r} is not valid Unicode") from None
        if not 1 <= len(raw_name) <= MAX_NAME_BYTES:
            raise LocalProtocolError(
                f"relay name must be 1..{MAX_NAME_BYTES} UTF-8 bytes, got {len(raw_name)}"
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.name):
            raise LocalProtocolError(f"relay name {self.name!r} contains control characters")
        if not self.addresses:
            raise LocalProtocolError(f"relay {self.name!r} has no address")
        normalised = tuple(dict.fromkeys(_normalise_address(a) for a in self.addresses))
        object.__setattr__(self, "addresses", normalised)
        for what, port in (("quic_port", self.quic_port), ("http_port", self.http_port)):
            if not 1 <= port <= 65_535:
                raise LocalProtocolError(f"{what} must be 1..65535, got {port}")
        races = tuple(sorted(set(self.race_ids)))
        bad = [r for r in races if not 1 <= r <= MAX_RACE_ID]
        if bad:
            raise LocalProtocolError(f"race ids must be 1..2^63-1, got {bad[0]}")
        object.__setattr__(self, "race_ids", races)
        encode_race_ids(races)  # refuses more races than fit in one TXT string
        cert = self.cert_sha256.lower()
        if cert and not _HEX64.fullmatch(cert):
            raise LocalProtocolError(
                f"cert_sha256 must be 64 hex digits or empty, got {self.cert_sha256!r}"
            )
        object.__setattr__(self, "cert_sha256", cert)
        if not 1 <= self.version <= 65_535:
            raise LocalProtocolError(f"version must be 1..65535, got {self.version}")

    def serves(self, race_id: int | None) -> bool:
        """Whether the relay serves ``race_id`` (every relay matches ``None``)."""
        return race_id is None or race_id in self.race_ids

    def quic_url(self, host: str | None = None) -> str:
        """HTTP/3 and WebTransport base URL, ``https://HOST:QUIC_PORT`` (no trailing slash).

        ``host`` defaults to the first address; pass the certificate's DNS name when the
        relay has a CA-signed certificate.
        """
        return f"https://{url_host(host or self.addresses[0])}:{self.quic_port}"

    def page_url(self, host: str | None = None) -> str:
        """The spectator page, ``http://HOST:HTTP_PORT/``."""
        return f"http://{url_host(host or self.addresses[0])}:{self.http_port}/"

    def to_properties(self) -> dict[str, str]:
        """The TXT record's properties (``cert`` only when there is a hash)."""
        props = {
            _KEY_VERSION: str(self.version),
            _KEY_HTTP: str(self.http_port),
            _KEY_RACES: encode_race_ids(self.race_ids),
        }
        if self.cert_sha256:
            props[_KEY_CERT] = self.cert_sha256
        return props

    @classmethod
    def from_properties(
        cls,
        name: str,
        addresses: Sequence[str],
        port: int | None,
        properties: Mapping[bytes, bytes | None],
    ) -> RelayAdvert:
        """Parse a resolved service: its instance name (without the service type), its
        addresses, its SRV port and its TXT properties. Raises :class:`DecodeError` with
        the reason on anything malformed, :class:`LimitExceeded` on oversized TXT data.
        """
        for key, value in properties.items():
            size = len(key) + (0 if value is None else 1 + len(value))
            if size > MAX_TXT_STRING:
                raise LimitExceeded(
                    f"relay {name!r}: TXT string {key!r} is {size} bytes, over {MAX_TXT_STRING}"
                )
        if port is None:
            raise DecodeError(f"relay {name!r}: the service has no port (SRV record missing)")
        text: dict[str, str | None] = {}
        for key, value in properties.items():
            # Keys are case-insensitive and the first of a repeated key wins (RFC 6763, 6.4).
            text.setdefault(
                _ascii(name, key).lower(), None if value is None else _ascii(name, value)
            )
        races = text.get(_KEY_RACES)
        if races is None:
            raise DecodeError(f"relay {name!r}: TXT key 'races' is missing")
        try:
            return cls(
                name=name,
                addresses=tuple(addresses),
                quic_port=port,
                http_port=_decimal(text, _KEY_HTTP),
                race_ids=decode_race_ids(races),
                cert_sha256=text.get(_KEY_CERT) or "",
                version=_decimal(text, _KEY_VERSION),
            )
        except LocalProtocolError as exc:
            raise DecodeError(f"relay {name!r}: {exc.message}") from None
        except DecodeError as exc:
            raise type(exc)(f"relay {name!r}: {exc.message}", reason=exc.reason) from None


def encode_race_ids(race_ids: Sequence[int]) -> str:
    """The compact ``races`` value: sorted ids, runs of three or more written ``a-b``.

    Raises :class:`LocalProtocolError` when there are more than :data:`MAX_RACES` or the
    value would not fit in one TXT string.
    """
    ids = sorted(set(race_ids))
    if len(ids) > MAX_RACES:
        raise LocalProtocolError(f"a relay advertises at most {MAX_RACES} races, got {len(ids)}")
    parts: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ids[i]}-{ids[j]}")
        else:
            parts.extend(str(r) for r in ids[i : j + 1])
        i = j + 1
    value = ",".join(parts)
    limit = MAX_TXT_STRING - len(_KEY_RACES) - 1
    if len(value) > limit:
        raise LocalProtocolError(
            f"{len(ids)} race ids take {len(value)} bytes in the TXT record, over {limit}: "
            "advertise fewer races (or split them over more relays)"
        )
    return value


def decode_race_ids(value: str) -> tuple[int, ...]:
    """Parse a ``races`` value (``""``, ``"4"``, ``"3,7-12"``) into sorted unique ids.

    Raises :class:`DecodeError` on malformed text, :class:`LimitExceeded` past
    :data:`MAX_RACES` ids.
    """
    if not value:
        return ()
    ids: set[int] = set()
    count = 0
    for part in value.split(","):
        first_text, dash, last_text = part.partition("-")
        if not _DECIMAL.fullmatch(first_text) or (dash and not _DECIMAL.fullmatch(last_text)):
            raise DecodeError(f"races: {part!r} is not a race id or a range 'a-b'")
        first = int(first_text)
        last = int(last_text) if dash else first
        if last < first or last > MAX_RACE_ID:
            raise DecodeError(f"races: {part!r} is not an increasing range of race ids")
        count += last - first + 1
        if count > MAX_RACES:
            raise LimitExceeded(f"races: more than {MAX_RACES} race ids")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def check_interfaces(interfaces: Sequence[str]) -> list[str]:
    """The interface addresses to multicast on, as a list; refuses an empty or bad one.

    zeroconf's default (no list) multicasts on every interface: callers must name them
    (``["127.0.0.1"]`` for tests and the demo). Raises :class:`LocalProtocolError`.
    """
    if isinstance(interfaces, str) or not interfaces:
        raise LocalProtocolError(
            "interfaces must be a non-empty list of IP addresses (e.g. ['127.0.0.1']), "
            f"got {interfaces!r}"
        )
    for address in interfaces:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise LocalProtocolError(f"interface {address!r} is not an IP address") from None
    return list(interfaces)


def url_host(address: str) -> str:
    """``address`` as the host part of a URL: IPv6 in brackets (zone as ``%25``)."""
    if ":" in address:
        return "[" + address.replace("%", "%25") + "]"
    return address


def _normalise_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise LocalProtocolError(f"{address!r} is not an IP address") from None


def _ascii(name: str, raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"relay {name!r}: TXT data {raw[:40]!r} is not ASCII") from None


def _decimal(text: Mapping[str, str | None], key: str) -> int:
    value = text.get(key)
    if value is None:
        raise DecodeError(f"TXT key {key!r} is missing or has no value")
    if not _DECIMAL.fullmatch(value) or len(value) > 5:
        raise DecodeError(f"TXT key {key!r} must be a number 1..65535, got {value!r}")
    return int(value)
