"""``gruppetto tracker``: log in, track a race, show the tracker's state."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def data_option(func: F) -> F:
    """The ``--data`` option every tracker command takes."""
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="GRUPPETTO_TRACKER_DATA",
        default="gruppetto-tracker",
        show_default=True,
        help="The tracker's directory: device key, certificate, fix buffer "
        "(env GRUPPETTO_TRACKER_DATA).",
    )(func)


@click.group()
def tracker() -> None:
    """The racer's tracker: log in once, then track races.

    Example:

        gruppetto tracker login --server https://cloud.example.org
    """


@tracker.command()
@click.option("--server", required=True, help="The cloud's URL, e.g. https://cloud.example.org.")
@click.option("--username", help="Your racer account (prompted when not given).")
@click.option(
    "--password-file",
    type=click.File("r"),
    help="Read the password from this file ('-' for stdin) instead of asking for it.",
)
@click.option(
    "--cafile",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Certificate(s) to trust for a cloud with a private or self-signed certificate.",
)
@data_option
def login(
    server: str,
    username: str | None,
    password_file: Any,
    cafile: Path | None,
    data_dir: Path,
) -> None:
    """Log in as a racer and enrol this device.

    Creates the device key on first use (readable by you only), gets the device
    certificate for the races you are registered in, and saves it with the courses of
    those races. Log in again after registering for another race.

    Example:

        gruppetto tracker login --server https://cloud.example.org --username anna
    """
    from .account import login as do_login
    from .errors import TrackerError

    if username is None:
        if not sys.stdin.isatty():
            raise click.UsageError("give --username (no terminal to ask on)")
        username = click.prompt("Username")
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("no password given")
    try:
        account = do_login(server, username, password, data_dir, cafile=cafile)
    except TrackerError as exc:
        raise click.ClickException(exc.message) from None
    cert = account.certificate
    races = ", ".join(map(str, cert.race_ids)) or "none yet (register, then log in again)"
    click.echo(f"logged in as {account.username}; device {cert.device_id.hex()[:12]}")
    click.echo(f"certified for races: {races}")
    if account.h3_port is None:
        click.echo("the cloud serves no HTTP/3: uploads will go through event relays only")


@tracker.command()
@click.option("--race", "race_id", required=True, type=click.IntRange(1), help="The race id.")
@click.option(
    "--source",
    required=True,
    help="gpsd[:HOST:PORT], nmea:PATH, gpx:PATH, fit:PATH or sim.",
)
@click.option("--relay", help="A relay's URL, https://HOST:PORT (else relays are discovered).")
@click.option("--relay-pin", help="SHA-256 of that relay's certificate (hex), as it prints it.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(0.1, 1000))
@click.option("--budget-mb", default=64.0, show_default=True, type=click.FloatRange(1))
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the simulator.")
@click.option(
    "--battery",
    default="auto",
    show_default=True,
    help="Where the battery level sent to relays and officials comes from: auto (the "
    "device's battery, else simulated with --source sim, else none), sysfs[:DIR] (Linux "
    "power supplies), sim or none.",
)
@click.option("--discover/--no-discover", default=True, show_default=True)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    default=["127.0.0.1"],
    show_default=True,
    help="Address to look for relays on with zeroconf (repeat).",
)
@data_option
def run(
    race_id: int,
    source: str,
    relay: str | None,
    relay_pin: str | None,
    speed: float,
    budget_mb: float,
    seed: int,
    battery: str,
    discover: bool,
    interfaces: tuple[str, ...],
    data_dir: Path,
) -> None:
    """Track a race: record every fix, sync it to a relay or the cloud.

    Refuses to start unless this device holds a valid certificate for the race. Each
    fix is stored before it is sent; the link resumes after coverage gaps, newest fix
    first. The battery level goes with the uploads (each percent it moves, when
    charging starts or stops, at least every minute) so officials see a tracker
    running low. Stop with Ctrl-C; run again to continue the same sequence.

    Example:

        gruppetto tracker run --race 3 --source gpx:stage.gpx --speed 10

        gruppetto tracker run --race 3 --source sim --battery sim
    """
    from .errors import TrackerError
    from .tracker import RunOptions, run_tracker

    options = RunOptions(
        race_id=race_id,
        source=source,
        relay=relay,
        relay_pin=relay_pin,
        speed=speed,
        budget_bytes=int(budget_mb * 1024 * 1024),
        seed=seed,
        interfaces=interfaces if discover else (),
        data_dir=data_dir,
        battery=battery,
    )
    live = sys.stdout.isatty()

    def show(line: str) -> None:
        if live:
            click.echo("\r\033[2K" + line[: shutil.get_terminal_size().columns - 1], nl=False)
        else:
            click.echo(line)

    try:
        asyncio.run(run_tracker(options, show))
    except TrackerError as exc:
        raise click.ClickException(exc.message) from None
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            click.echo()


@tracker.command()
@data_option
def status(data_dir: Path) -> None:
    """Show the account, the certificate and the fix buffer of this tracker.

    Example:

        gruppetto tracker status --data ./gruppetto-tracker
    """
    from .errors import TrackerError
    from .tracker import describe_tracker

    try:
        for line in describe_tracker(data_dir):
            click.echo(line)
    except TrackerError as exc:
        raise click.ClickException(exc.message) from None
