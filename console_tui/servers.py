"""Which servers the console talks to: the cloud, and the event relay when there is one.

``--server`` may name the cloud, an event relay, or (given twice) both; each URL is
probed (a relay answers ``GET /api/info`` with its ports, the cloud publishes
``/.well-known/jwks.json``). With no ``--server`` a relay is found with zeroconf. Officials
log in to the cloud, so a relay alone must say where its cloud is (``cloud`` in its
``/api/info``), or the cloud must be given too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .client import TIMEOUT
from .discovery import find_relays, relay_url
from .errors import ConsoleError

__all__ = ["Servers", "probe", "resolve"]


@dataclass(frozen=True, slots=True)
class Servers:
    """Where the console goes."""

    cloud: str
    """The cloud's base URL (login, races, the system of record)."""
    relay: str | None = None
    """The event relay's TCP base URL, when one is known."""
    relay_name: str = "relay"
    """The relay's name, for people."""


async def probe(url: str, verify: bool | str = True) -> tuple[str, dict[str, Any]]:
    """("relay", its /api/info) or ("cloud", {}); ConsoleError when it is neither."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, verify=verify) as http:
            response = await http.get("/api/info")
            if response.status_code == 200:
                info = response.json()
                if isinstance(info, dict) and "quic_port" in info:
                    return "relay", info
            response = await http.get("/.well-known/jwks.json")
            if response.status_code == 200 and "keys" in response.json():
                return "cloud", {}
    except httpx.TransportError as exc:
        raise ConsoleError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    except ValueError:
        pass
    raise ConsoleError(f"{url} is neither a Gruppetto cloud nor an event relay")


async def resolve(
    urls: Sequence[str],
    *,
    interfaces: Sequence[str],
    verify: bool | str = True,
    discover_s: float = 5.0,
) -> Servers:
    """The cloud and the relay from ``--server`` URLs, or a relay found with zeroconf."""
    cloud: str | None = None
    relay: str | None = None
    info: dict[str, Any] = {}
    for raw in urls:
        url = raw.rstrip("/")
        kind, answer = await probe(url, verify)
        if kind == "cloud":
            if cloud is not None and cloud != url:
                raise ConsoleError(f"two clouds given ({cloud} and {url}): give one")
            cloud = url
        else:
            if relay is not None and relay != url:
                raise ConsoleError(f"two relays given ({relay} and {url}): give one")
            relay, info = url, answer
    if not urls:
        try:
            adverts = await find_relays(interfaces, discover_s)
        except (OSError, ValueError) as exc:
            raise ConsoleError(f"cannot look for relays: {exc}") from None
        if not adverts:
            raise ConsoleError(
                f"no event relay answered on {', '.join(interfaces)} within {discover_s:g} s: "
                "give the cloud or the relay with --server URL (or the right --interface)"
            )
        relay = relay_url(adverts[0])
        _, info = await probe(relay, verify)
    if cloud is None:
        named = info.get("cloud") or info.get("cloud_url")
        if not isinstance(named, str) or not named:
            raise ConsoleError(
                f"the relay at {relay} does not say where its cloud is: "
                "give the cloud too (--server CLOUD_URL --server RELAY_URL)"
            )
        cloud = named.rstrip("/")
    return Servers(cloud, relay, str(info.get("name") or "relay"))
