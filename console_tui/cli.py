"""``gruppetto console``: the officials' race-control console."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_DATA = "~/.gruppetto-console"


@click.command()
@click.option(
    "--server",
    "servers",
    multiple=True,
    metavar="URL",
    help="The cloud or an event relay; give it twice for both. Without it, a relay is "
    "found with zeroconf.",
)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    default=["127.0.0.1"],
    show_default=True,
    metavar="ADDR",
    help="Address to look for relays on with zeroconf (repeat).",
)
@click.option(
    "--data",
    "data_dir",
    default=DEFAULT_DATA,
    show_default=True,
    envvar="GRUPPETTO_CONSOLE_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where commands wait when no server can take them (queue.json).",
)
@click.option("--username", default="", help="Fill in the username on the login screen.")
@click.option(
    "--cafile",
    type=click.Path(exists=True, dir_okay=False),
    help="Certificate(s) to trust for a cloud or relay with a private or self-signed one.",
)
def console(
    servers: tuple[str, ...],
    interfaces: tuple[str, ...],
    data_dir: Path,
    username: str,
    cafile: str | None,
) -> None:
    """Race control for officials: live leaderboard, groups, alerts, relays, and
    start, neutralise, resume, penalties, DNF/DNS/DSQ, reinstate, finish, publish.

    Officials and admins log in to the cloud. Every command asks for confirmation and
    goes to the cloud; when the cloud is out of reach, to the event relay; when neither
    answers, to a local queue in --data, sent later exactly once. Press ? for the keys.

    Example:

        gruppetto console --server http://127.0.0.1:8000
    """
    import asyncio

    from .app import ConsoleApp
    from .client import CloudClient, RelayClient
    from .errors import ConsoleError
    from .outbox import Outbox
    from .servers import resolve
    from .services import Services

    verify: bool | str = cafile or True
    try:
        found = asyncio.run(resolve(servers, interfaces=interfaces, verify=verify))
        outbox = Outbox.open(data_dir)
    except ConsoleError as exc:
        raise click.ClickException(exc.message) from None
    cloud = CloudClient(found.cloud, verify=verify)
    relay = None
    if found.relay is not None:
        relay = RelayClient(
            found.relay,
            token=lambda: cloud.access_token,
            name=f"relay {found.relay_name}",
            verify=verify,
        )
    ConsoleApp(Services(cloud, outbox, relay), username=username).run()
