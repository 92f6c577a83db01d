"""The ``gruppetto`` command: one entry point, a subcommand per component."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gruppetto")
def main() -> None:
    """Gruppetto: run, watch and score bicycle races.

    Example:

        gruppetto --help
    """
