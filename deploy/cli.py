"""The ``gruppetto`` command: one entry point, a subcommand per component."""

from __future__ import annotations

import click

from cloud.cli import cloud
from edge_relay.cli import relay


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gruppetto")
def main() -> None:
    """Gruppetto: run, watch and score bicycle races.

    Example:

        gruppetto --help
    """


main.add_command(cloud)
main.add_command(relay)


@main.command()
@click.option(
    "--offline-minutes",
    default=60,
    show_default=True,
    type=click.IntRange(1, 600),
    help="How long the rider rides without coverage.",
)
@click.option(
    "--live-seconds",
    default=120,
    show_default=True,
    type=click.IntRange(10, 3_600),
    help="Seconds ridden in coverage before and after the outage.",
)
def demo(offline_minutes: int, live_seconds: int) -> None:
    """Show the protocol core at work: one rider's day, offline hour included.

    A simulated rider records signed fixes, sends them live, loses coverage, comes back
    (newest position first, backlog behind), and the relay's verified runs reach the
    cloud exactly once. (The full system demo arrives with the relay and cloud.)

    Example:

        gruppetto demo --offline-minutes 60
    """
    from deploy.walkthrough import run

    figures = run(live_seconds, offline_minutes * 60, lambda line: click.echo(f"  {line}"))
    click.echo("figures: " + ", ".join(f"{k}={v:g}" for k, v in figures.items()))
    if not figures["exactly_once"]:
        raise click.ClickException("the cloud did not end with every fix exactly once")


if __name__ == "__main__":
    main()
