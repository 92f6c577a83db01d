"""The relay's QUIC server forgets a finished connection's ids without scanning them all."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from edge_relay.h3 import (
    RelayQuicServer,
    Response,
    SessionTickets,
    WebTransportSession,
    _ProtocolsByCid,
    quic_configuration,
    serve_h3,
)
from edge_relay.tls import ensure_certificate
from tests.cloud.h3 import h3_client


class Echo:
    """A handler answering every request with its path."""

    max_body = 1 << 16
    request_timeout_s = 10.0

    async def request(self, method: str, path: str, body: bytes) -> Response:
        return Response(200, path.encode(), "text/plain")

    def session_opened(self, path: str, session: WebTransportSession) -> bool:
        return False

    def session_closed(self, session: WebTransportSession) -> None:
        pass

    def session_message(self, session: WebTransportSession, data: bytes) -> None:
        pass


def test_closed_connections_leave_no_connection_ids_behind(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path, ["127.0.0.1"], datetime.now(UTC))
    config = quic_configuration(str(cert.cert_path), str(cert.key_path))

    async def go() -> None:
        server = await serve_h3("127.0.0.1", 0, config, Echo(), SessionTickets())
        assert isinstance(server, RelayQuicServer)
        table = server._protocols
        assert isinstance(table, _ProtocolsByCid)
        port = server._transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        try:
            for n in range(12):
                async with h3_client("127.0.0.1", port) as client:
                    status, _, body = await client.request("GET", f"/n/{n}")
                    assert (status, body) == (200, f"/n/{n}".encode())
                    assert len(table.cids) >= 1  # this connection's ids, indexed
                    assert set(table) == {c for cids in table.cids.values() for c in cids}
            for _ in range(100):  # the close reaches the server a moment later
                if not table:
                    break
                await asyncio.sleep(0.02)
            assert dict(table) == {}
            assert table.cids == {}
        finally:
            server.close()

    asyncio.run(go())


def test_a_relay_process_lets_per_packet_objects_die_young() -> None:
    """settle_heap: startup objects frozen, a large young generation (in a fresh process,
    so this one's collector is left alone)."""
    script = (
        "import gc; from edge_relay.h3 import settle_heap, GC_YOUNG_THRESHOLD as T; "
        "settle_heap(); y, m, o = gc.get_threshold(); "
        "print(y == T, m >= 20, o == 10, gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 4
