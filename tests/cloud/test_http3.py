"""The cloud over HTTP/3 (QUIC) and HTTPS/HTTP/2, with its self-signed certificate."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx

from cloud.serve import ensure_self_signed
from tests.cloud.conftest import free_udp_port, start_cloud
from tests.cloud.h3 import h3_client


def test_http3_and_http2_over_tls_serve_the_same_api(tmp_path: Path) -> None:
    quic_port = free_udp_port()
    server = start_cloud(tmp_path / "cloud", "--quic-bind", f"127.0.0.1:{quic_port}")
    try:

        async def over_quic() -> tuple[int, bytes, int, bytes]:
            async with h3_client("127.0.0.1", quic_port) as client:
                status, _, body = await client.request("GET", "/healthz/ready")
                login = json.dumps({"username": "nobody", "password": "wrong password!"})
                denied, _, reason = await client.request(
                    "POST",
                    "/api/auth/login",
                    body=login.encode(),
                    headers={"content-type": "application/json"},
                )
                return status, body, denied, reason

        status, body, denied, reason = asyncio.run(over_quic())
        assert status == 200
        assert json.loads(body)["checks"] == {"sqlite": "ok", "duckdb": "ok"}
        assert denied == 401
        assert json.loads(reason)["error"]["code"] == "invalid-credentials"
        assert (tmp_path / "cloud" / "tls" / "cert.pem").exists()
        with httpx.Client(http2=True, verify=False, base_url=server.url) as https:
            response = https.get("/healthz/live")
            assert response.http_version == "HTTP/2"
            assert response.json() == {"status": "ok"}
    finally:
        server.stop()


def test_real_certificate_files_are_served_as_given(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "pki")  # stands in for an operator's files
    server = start_cloud(
        tmp_path / "cloud", "--tls", "--certfile", str(cert), "--keyfile", str(key)
    )
    try:
        trusted = ssl.create_default_context(cafile=str(cert))  # verified, not skipped
        with httpx.Client(verify=trusted, base_url=server.url) as https:
            assert https.get("/healthz/live").json() == {"status": "ok"}
        assert not (tmp_path / "cloud" / "tls").exists()  # none generated
    finally:
        server.stop()
