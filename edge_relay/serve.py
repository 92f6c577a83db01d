"""Run a :class:`~edge_relay.relay.Relay` in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import click

from .h3 import settle_heap
from .relay import Relay, RelayNotConfigured
from .settings import RelaySettings
from .tls import RelayCertificateError


def run(settings: RelaySettings) -> None:
    """Start the relay, print one ``relay ready {json}`` line, serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_main(settings))
    except RelayNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    except RelayCertificateError as exc:
        raise click.ClickException(f"certificate: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc}") from None


async def _main(settings: RelaySettings) -> None:
    relay = Relay(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await relay.start()
    settle_heap()
    ready = {
        "quic_port": relay.quic_port,
        "spectator_port": relay.spectator_port,
        "http_port": relay.http_port,
        "cert_sha256": relay.certificate.sha256_hex,
        "page": f"http://{settings.http_host}:{relay.http_port}/",
    }
    print("relay ready " + json.dumps(ready), flush=True)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await relay.stop()
