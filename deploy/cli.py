"""The ``gruppetto`` command: one entry point, a subcommand per component."""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli import cloud
from console_tui.cli import console
from deploy.cost import cost
from edge_relay.cli import relay
from tracker_app.cli import tracker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gruppetto")
def main() -> None:
    """Gruppetto: run, watch and score bicycle races.

    Example:

        gruppetto --help
    """


main.add_command(cloud)
main.add_command(console)
main.add_command(cost)
main.add_command(relay)
main.add_command(tracker)


@main.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="gruppetto-demo",
    show_default=True,
    help="Keep every part's state here between runs.",
)
@click.option("--races", type=click.IntRange(1, 10), default=2, show_default=True)
@click.option(
    "--riders", type=click.IntRange(1, 50), default=50, show_default=True, help="Per race."
)
@click.option("--laps", type=click.IntRange(1, 20), default=1, show_default=True)
@click.option("--cloud-port", type=click.IntRange(0, 65_535), default=8000, show_default=True)
@click.option(
    "--relay-port",
    type=click.IntRange(0, 65_535),
    default=4433,
    show_default=True,
    help="UDP port of the relay (HTTP/3, WebTransport).",
)
@click.option(
    "--page-port",
    type=click.IntRange(0, 65_535),
    default=8080,
    show_default=True,
    help="TCP port of the relay's spectator page. 0 picks free ports.",
)
@click.option(
    "--duration",
    type=click.FloatRange(1, None),
    default=None,
    help="Stop by itself after this many seconds (default: run until Ctrl-C).",
)
def demo(
    data_dir: Path,
    races: int,
    riders: int,
    laps: int,
    cloud_port: int,
    relay_port: int,
    page_port: int,
    duration: float | None,
) -> None:
    """Run the whole system on this machine: cloud, relay, two races, 100 riders.

    Starts the cloud and an event relay on loopback, makes an admin, an official and a
    spectator account, two races on the bundled course with 50 simulated riders each
    (real trackers: signed fixes, SQLite buffer, HTTP/3 to the relay), then prints the
    spectator page's URL and the credentials. Ctrl-C stops everything cleanly.

    Example:

        gruppetto demo --data ./gruppetto-demo
    """
    from deploy.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        data_dir=data_dir,
        races=races,
        riders=riders,
        cloud_port=cloud_port,
        quic_port=relay_port,
        page_port=page_port,
        laps=laps,
        duration_s=duration,
    )
    try:
        run_demo(options, click.echo)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
