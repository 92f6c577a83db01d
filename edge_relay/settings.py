"""The relay's settings (flags of ``gruppetto relay``, or ``GRUPPETTO_RELAY_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``HOST`` → (host, port); ValueError when malformed."""
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError(f"{value!r}: missing ']' after an IPv6 address")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r}: expected :PORT after the address")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    if not host or not 0 <= port <= 65_535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, port


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How one relay process runs."""

    data_dir: Path
    """Where the relay keeps its SQLite store and certificate."""
    cloud_url: str | None
    """The cloud's base URL (None: run standalone from the saved configuration)."""
    credential: str | None
    """The relay credential the cloud issued (``grr_<id>_<secret>``)."""
    quic_host: str = "127.0.0.1"
    """UDP address for HTTP/3 (trackers) and WebTransport (spectators)."""
    quic_port: int = 4433
    """UDP port (0: any free port)."""
    http_host: str = "127.0.0.1"
    """TCP address for the spectator page, WebSocket, health and metrics."""
    http_port: int = 8080
    """TCP port (0: any free port)."""
    cert_hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
    """Names and addresses in the self-signed certificate."""
    cert_file: Path | None = None
    """An operator's certificate (PEM) instead of the self-signed one."""
    key_file: Path | None = None
    """Its private key (PEM)."""
    advertise: bool = True
    """Announce the relay with zeroconf."""
    interfaces: tuple[str, ...] = ("127.0.0.1",)
    """Addresses zeroconf announces on (never all interfaces by default)."""
    cloud_verify: bool | str = True
    """TLS verification of the cloud: True, False, or a CA bundle path."""
    tick_ms: int = 1_000
    """Longest time between two live frames of a race."""
    config_every_s: float = 15.0
    """How often the race configuration is refreshed from the cloud."""
    public_host: str | None = None
    """The name or address spectators and trackers use (default: the QUIC address)."""
    request_timeout_s: float = 30.0
    """An upload whose body has not fully arrived by then is reset."""
    name: str = "relay"
    """Name advertised with zeroconf."""
    fanout_workers: int = 0
    """Extra processes serving WebTransport spectators (0: the main process does)."""
    spectator_port: int = 0
    """UDP port the fan-out workers share (0: any free port)."""

    @property
    def db_path(self) -> Path:
        """The relay's SQLite store."""
        return self.data_dir / "relay.db"
