"""Helpers for tracker tests: a real cloud with HTTP/3, racers, a logged-in tracker."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync_protocol.ack import Ack
from sync_protocol.fix import Fix
from sync_protocol.upload import HELLO_PATH, HelloReply
from tests.cloud.conftest import CloudServer, free_udp_port, start_cloud
from tests.cloud.helpers import PASSWORD, user_client
from tests.edge_relay.harness import RelayProcess, start_relay
from tracker_app import account
from tracker_app.account import Account
from tracker_app.h3client import Endpoint
from tracker_app.hops import Hop, Link
from tracker_app.simulate import realistic_track
from tracker_app.sources.reading import Quality, Reading

_names = itertools.count(1)


def start_h3_cloud(data_dir: Path) -> CloudServer:
    """``gruppetto cloud`` with TLS and HTTP/3 (its self-signed certificate in DATA/tls)."""
    return start_cloud(data_dir, "--quic-bind", f"127.0.0.1:{free_udp_port()}")


def cafile(cloud: CloudServer) -> Path:
    """The cloud's self-signed certificate, for the tracker's --cafile."""
    return cloud.data_dir / "tls" / "cert.pem"


@dataclass
class Racer:
    """A racer account on the cloud."""

    username: str
    id: int
    client: httpx.Client

    def register(self, race_id: int) -> None:
        response = self.client.post(f"/api/races/{race_id}/registrations", json={})
        assert response.status_code == 201, response.text


def new_racer(cloud: CloudServer, *race_ids: int) -> Racer:
    client, user_id = user_client(cloud, "racer")
    racer = Racer(client.get("/api/me").json()["user"]["username"], user_id, client)
    for race_id in race_ids:
        racer.register(race_id)
    return racer


def new_race(admin: httpx.Client, name: str = "Stage") -> int:
    response = admin.post(
        "/api/races", json={"name": f"{name} {next(_names)}", "starts_at": "2026-07-01T10:00:00Z"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def tracker_login(cloud: CloudServer, racer: Racer, data_dir: Path) -> Account:
    """``gruppetto tracker login`` as this racer (the library call behind it)."""
    return account.login(cloud.url, racer.username, PASSWORD, data_dir, cafile=cafile(cloud))


# -- relays, and what they hold --------------------------------------------------------


def enrol_relay(admin: httpx.Client, race_id: int, name: str) -> str:
    """Enrol another relay for ``race_id``; returns its credential."""
    response = admin.post("/api/relays", json={"name": name, "race_ids": [race_id]})
    assert response.status_code == 201, response.text
    return str(response.json()["credential"])


def launch_relay(cloud: CloudServer, data_dir: Path, credential: str) -> RelayProcess:
    """A real ``gruppetto relay`` uplinked to the (TLS) cloud."""
    return start_relay(data_dir, cloud, credential, "--cloud-ca", str(cafile(cloud)))


def relay_hop(relay: RelayProcess, name: str = "relay") -> Hop:
    """The relay as the tracker sees it: its QUIC port, pinned to its certificate."""
    pin = bytes.fromhex(relay.cert_sha256)
    return Hop(Link.RELAY, name, Endpoint("127.0.0.1", relay.quic_port, pin_sha256=pin))


def relay_fixes(relay: RelayProcess, device: bytes) -> dict[int, tuple[Fix, bool]]:
    """The fixes a relay stored for ``device``: seq -> (fix, verified)."""
    conn = sqlite3.connect(relay.data_dir / "relay.db", timeout=30)
    try:
        rows = conn.execute(
            "SELECT seq, t_ms, lat_e7, lon_e7, ele_dm, speed_cms, heading_dd, hacc_dm, verified"
            " FROM fixes WHERE device_id = ? ORDER BY seq",
            (device,),
        ).fetchall()
    finally:
        conn.close()
    return {row[0]: (Fix(*row[:8]), bool(row[8])) for row in rows}


# -- readings ---------------------------------------------------------------------------


def readings(count: int, start_ms: int, *, first: int = 0, covered: bool = True) -> list[Reading]:
    """``count`` simulated 1 Hz readings from ``start_ms`` (track positions ``first`` on)."""
    track = TRACK[first : first + count]
    return [
        Reading(
            t_ms=start_ms + (first + i) * 1000,
            lat=fix.lat,
            lon=fix.lon,
            ele_m=fix.ele_dm / 10,
            speed_ms=fix.speed_cms / 100,
            heading_deg=fix.heading_dd / 10,
            hacc_m=fix.hacc_dm / 10,
            quality=Quality.SIM,
            satellites=9,
            coverage=covered,
        )
        for i, fix in enumerate(track)
    ]


TRACK = realistic_track(4_000)


# -- a hop that answers junk ------------------------------------------------------------


@dataclass
class JunkHop:
    """A hop that answers junk, and the paths it was asked for."""

    hop: Hop
    requests: list[str]


class _JunkProtocol(QuicConnectionProtocol):
    """Answers every HTTP/3 request with ``status`` and a body of junk; with a
    ``hello_device``, a hello gets a proper reply first (an empty ack for that device)."""

    status = 200
    requests: list[str]
    hello_device: bytes | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.paths: dict[int, str] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                path = dict(h3_event.headers).get(b":path", b"").decode()
                self.requests.append(path)
                self.paths[h3_event.stream_id] = path
            if isinstance(h3_event, HeadersReceived | DataReceived) and h3_event.stream_ended:
                stream = h3_event.stream_id
                body = b"\x93\xffjunk from a broken hop"
                if self.hello_device is not None and self.paths.get(stream) == HELLO_PATH:
                    body = HelloReply(Ack(self.hello_device, 0), 0, live_mac=False).encode()
                self.http.send_headers(stream, [(b":status", str(self.status).encode())])
                self.http.send_data(stream, body, end_stream=True)
        self.transmit()


@asynccontextmanager
async def junk_hop(
    tmp_path: Path, status: int = 200, *, hello_device: bytes | None = None
) -> AsyncIterator[JunkHop]:
    """A real aioquic HTTP/3 server on loopback whose every answer is junk (or a 5xx);
    with ``hello_device`` it takes that device's hello, then answers uploads with junk."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "junk")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    label = f"junk-{status}" + ("-after-hello" if hello_device else "")
    cert_path, key_path = tmp_path / f"{label}.pem", tmp_path / f"{label}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(cert_path, key_path)
    requests: list[str] = []
    attrs = {"status": status, "requests": requests, "hello_device": hello_device}
    protocol = type("Junk", (_JunkProtocol,), attrs)
    server = await serve("127.0.0.1", 0, configuration=config, create_protocol=protocol)
    port = server._transport.get_extra_info("sockname")[1]
    pin = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    try:
        hop = Hop(Link.RELAY, label, Endpoint("127.0.0.1", port, pin_sha256=pin))
        yield JunkHop(hop, requests)
    finally:
        server.close()
