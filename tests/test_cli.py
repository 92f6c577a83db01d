"""The command line: every command has help that ends with an example and a docs entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from deploy.cli import main

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [("gruppetto", main)]
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        found.append((f"gruppetto {name}", command))
    return found


@pytest.mark.parametrize(("name", "command"), commands(), ids=lambda v: str(v))
def test_every_command_has_help_ending_with_an_example(name: str, command: click.Command) -> None:
    help_text = (command.help or "").strip()
    assert help_text, f"{name} has no help"
    assert "Example:" in help_text, f"{name}'s help must end with a pasteable example"
    assert help_text.rsplit("Example:", 1)[1].strip().startswith("gruppetto")


@pytest.mark.parametrize(("name", "command"), commands()[1:], ids=lambda v: str(v))
def test_every_command_has_a_docs_entry(name: str, command: click.Command) -> None:
    assert f"## `{name}`" in (ROOT / "docs" / "cli.md").read_text()


def test_demo_refuses_bad_options_with_a_clear_message() -> None:
    result = CliRunner().invoke(main, ["demo", "--riders", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--riders'" in result.output


def test_benchmark_prints_one_json_object_with_its_targets() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.protocol", "--json", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result = json.loads(out)
    assert result["bench"] == "protocol"
    assert set(result["targets"]) <= set(result["figures"])
    assert isinstance(result["met"], bool)
