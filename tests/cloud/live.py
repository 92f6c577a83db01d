"""Following a race's NDJSON live stream (``GET /api/races/{id}/live``) as a relay does."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.cloud.conftest import CloudServer


@contextmanager
def follow(server: CloudServer, credential: str, race_id: int) -> Iterator[queue.Queue[Any]]:
    """Read the race's NDJSON live stream on a thread; messages arrive on the queue."""
    lines: queue.Queue[Any] = queue.Queue()
    client = httpx.Client(
        base_url=server.url,
        timeout=30,
        headers={"Authorization": f"Relay {credential}"},
        verify=not server.tls,  # a test server's certificate is self-signed
    )
    stop = threading.Event()

    def read() -> None:
        try:
            with client.stream("GET", f"/api/races/{race_id}/live") as response:
                lines.put(response.status_code)
                for line in response.iter_lines():
                    if stop.is_set():
                        return
                    lines.put(json.loads(line))
        except httpx.TransportError:
            if not stop.is_set():  # closing the client ends the read on purpose
                raise

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=10) == 200
        yield lines
    finally:
        stop.set()
        client.close()


def next_of(lines: queue.Queue[Any], kind: str) -> dict[str, Any]:
    while True:
        message = lines.get(timeout=10)
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]
