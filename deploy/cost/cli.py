"""``gruppetto cost``: the command."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option(
    "--provider", "name", metavar="NAME", help="A priced provider: a file name in deploy/pricing/."
)
@click.option(
    "--pricing",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Your own pricing file (same format) instead of --provider.",
)
@click.option(
    "--races",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Races a month (50 riders, 4 h each).",
)
@click.option(
    "--spectators",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Spectators watching at once at the peak, all races together.",
)
@click.option(
    "--history-months",
    default=12,
    show_default=True,
    type=click.IntRange(0, 1200),
    help="Months of race history kept.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def cost(
    name: str | None,
    pricing: Path | None,
    races: int,
    spectators: int,
    history_months: int,
    as_json: bool,
) -> None:
    """Monthly cost on a provider: the base with no users, each scale-up step, a total.

    Prices come from deploy/pricing/NAME.toml, each with its source and date: check them
    before buying. The model and its assumptions are explained in docs/cost.md.

    Example:

        gruppetto cost --provider hetzner --races 20 --spectators 10000
    """
    from .model import estimate
    from .pricing import CostError, UnknownProviderError, load_pricing, load_provider, providers
    from .render import render

    try:
        if (name is None) == (pricing is None):
            raise UnknownProviderError(
                f"give --provider NAME ({', '.join(providers())}) or --pricing FILE"
            )
        provider = load_pricing(pricing) if pricing else load_provider(str(name))
        result = estimate(provider, races, spectators, history_months)
    except CostError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(render(result, show_scenario=bool(races or spectators)))
