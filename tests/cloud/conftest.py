"""A real cloud server (the ``gruppetto cloud`` command) on loopback, shared per module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CloudServer:
    """A running ``gruppetto cloud`` process."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    tls: bool = False
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kw: object) -> httpx.Client:
        """An HTTP client for this server, closed when the server stops."""
        client = httpx.Client(base_url=self.url, timeout=10, verify=not self.tls, **kw)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``gruppetto cloud --data DIR ARGS`` (administrative subcommands)."""
        return subprocess.run(
            [sys.executable, "-m", "deploy.cli", "cloud", "--data", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cloud(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> CloudServer:
    """Run ``gruppetto cloud`` with ``extra`` flags and ``env`` added to the environment.

    ``port``: listen there (a restart on the same address) instead of a free port.
    """
    port = port or free_port()
    tls = "--tls" in extra or "--quic-bind" in extra
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deploy.cli",
            "cloud",
            "--data",
            str(data_dir),
            "--bind",
            f"127.0.0.1:{port}",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    log.close()  # the child holds its own copy
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cloud exited: {(data_dir / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/healthz/ready", timeout=1, verify=False).status_code == 200:
                return CloudServer(url, data_dir, process, tls=tls)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("cloud did not become ready in 30 s")


@pytest.fixture(scope="module")
def cloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    server = start_cloud(tmp_path_factory.mktemp("cloud"))
    yield server
    server.stop()
