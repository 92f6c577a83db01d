"""``gruppetto relay``: run an edge relay until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


def _hostport(
    default_port: int,
) -> Callable[[click.Context, click.Parameter, str], tuple[str, int]]:
    def convert(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int]:
        from .settings import split_hostport

        try:
            return split_hostport(value, default_port)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


@click.command()
@click.option("--cloud", "cloud_url", envvar="GRUPPETTO_CLOUD", help="The cloud's base URL.")
@click.option(
    "--credential",
    "credential_file",
    envvar="GRUPPETTO_RELAY_CREDENTIAL",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File holding the relay credential the cloud issued (grr_...).",
)
@click.option(
    "--data",
    "data_dir",
    envvar="GRUPPETTO_RELAY_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    default="relay-data",
    show_default=True,
    help="Directory of the relay's store and certificate.",
)
@click.option(
    "--quic-bind",
    callback=_hostport(4433),
    default="127.0.0.1:4433",
    show_default=True,
    envvar="GRUPPETTO_RELAY_QUIC_BIND",
    help="UDP address for HTTP/3 uploads and WebTransport (port 0: any).",
)
@click.option(
    "--http-bind",
    callback=_hostport(8080),
    default="127.0.0.1:8080",
    show_default=True,
    envvar="GRUPPETTO_RELAY_HTTP_BIND",
    help="TCP address for the spectator page, WebSocket, health, metrics (port 0: any).",
)
@click.option(
    "--public-host",
    default=None,
    help="Name or address spectators reach this relay at (default: the --quic-bind host).",
)
@click.option("--name", default="relay", show_default=True, help="Name announced on the network.")
@click.option(
    "--cert-host",
    "cert_hosts",
    multiple=True,
    help="Name or address for the self-signed certificate (repeat; default: loopback).",
)
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--advertise/--no-advertise", default=True, show_default=True, help="Announce with zeroconf."
)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    default=["127.0.0.1"],
    show_default=True,
    help="Address zeroconf announces on (repeat). Never all interfaces unless listed.",
)
@click.option(
    "--cloud-ca",
    default=None,
    help="CA bundle to verify the cloud's certificate, or 'insecure' for a self-signed test cloud.",
)
@click.option(
    "--tick-ms",
    type=click.IntRange(100, 10_000),
    default=1_000,
    show_default=True,
    help="Longest time between two live frames of a race.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0.5, 600),
    default=30.0,
    show_default=True,
    help="Seconds an upload may take to arrive before it is reset (half-open uploads).",
)
@click.option(
    "--fanout-workers",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="Extra processes serving WebTransport spectators on their own UDP port "
    "(--spectator-port) and sharing the tracker port (uploads are answered by the main "
    "process): one per core for thousands of spectators.",
)
@click.option(
    "--spectator-port",
    type=click.IntRange(0, 65_535),
    default=0,
    show_default=True,
    help="UDP port the fan-out workers share (0: any free port; /api/info tells).",
)
def relay(
    cloud_url: str | None,
    credential_file: Path | None,
    data_dir: Path,
    quic_bind: tuple[str, int],
    http_bind: tuple[str, int],
    public_host: str | None,
    name: str,
    cert_hosts: tuple[str, ...],
    certfile: Path | None,
    keyfile: Path | None,
    advertise: bool,
    interfaces: tuple[str, ...],
    cloud_ca: str | None,
    tick_ms: int,
    request_timeout: float,
    fanout_workers: int,
    spectator_port: int,
) -> None:
    """Run an edge relay: tracker uploads, live scoring, spectators, forwarding.

    Trackers upload over HTTP/3 (UDP); spectators watch over WebTransport or the
    WebSocket fallback; everything is stored in DATA/relay.db before it is acked and
    forwarded to the cloud when it is reachable. Without --cloud the relay runs its races
    from the configuration saved on an earlier run.

    With --fanout-workers N, N more processes serve the WebTransport spectators on a UDP
    port of their own (the browser is told it by /api/info) and share the tracker port,
    taking in uploads that the main process verifies, stores and answers; scoring and the
    WebSocket fallback stay in the main process.

    Example:

        gruppetto relay --cloud http://127.0.0.1:8000 --credential relay.key --data ./relay-data
    """
    from .serve import run
    from .settings import RelaySettings

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("give both --certfile and --keyfile, or neither")
    if cloud_url and credential_file is None:
        raise click.UsageError("--cloud needs --credential FILE (from POST /api/relays)")
    credential = credential_file.read_text().strip() if credential_file else None
    verify: bool | str = True
    if cloud_ca == "insecure":
        verify = False
    elif cloud_ca:
        verify = cloud_ca
    settings = RelaySettings(
        data_dir=data_dir,
        cloud_url=cloud_url,
        credential=credential,
        quic_host=quic_bind[0],
        quic_port=quic_bind[1],
        http_host=http_bind[0],
        http_port=http_bind[1],
        cert_hosts=cert_hosts or ("127.0.0.1", "::1", "localhost"),
        cert_file=certfile,
        key_file=keyfile,
        advertise=advertise,
        interfaces=interfaces,
        cloud_verify=verify,
        tick_ms=tick_ms,
        request_timeout_s=request_timeout,
        public_host=public_host,
        name=name,
        fanout_workers=fanout_workers,
        spectator_port=spectator_port,
    )
    run(settings)
